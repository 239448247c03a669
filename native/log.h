// libbpf prints through one process-wide callback. While a LibbpfLog lives,
// what libbpf prints on this thread is collected in it; otherwise dropped.
#pragma once

#include <string>

namespace vmpeer {

void InstallLibbpfPrint();

class LibbpfLog {
public:
  LibbpfLog();
  ~LibbpfLog();
  LibbpfLog(const LibbpfLog &) = delete;
  LibbpfLog &operator=(const LibbpfLog &) = delete;

  std::string take();
  void append(const char *text, size_t size);

private:
  std::string text_;
  LibbpfLog *outer_;
};

} // namespace vmpeer
