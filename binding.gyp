# node-gyp build (used by prebuildify and by installs without a prebuild).
# Sources and flags come from native/build.json, shared with CMakeLists.txt.
{
  "targets": [
    {
      "target_name": "<!(node -p \"require('./native/build.json').target\")",
      "sources": ["<!@(node -p \"require('./native/build.json').sources.join(' ')\")"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["<!@(node -p \"require('./native/build.json').defines.join(' ')\")"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": [
        "<!@(node -p \"require('./native/build.json').cflags.join(' ')\")",
        "<!@(pkg-config --cflags libbpf)"
      ],
      "libraries": ["<!@(pkg-config --libs libbpf)"]
    }
  ]
}
