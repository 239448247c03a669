#include "log.h"

#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>
#include <vector>

namespace vmpeer {

namespace {

// The verifier's verdict is at the end of its log: keep the tail.
constexpr size_t kMaxLog = 256 * 1024;

thread_local LibbpfLog *current = nullptr;

int Print(enum libbpf_print_level level, const char *format, va_list args) {
  if (level == LIBBPF_DEBUG || !current)
    return 0;
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  if (n <= 0)
    return 0;
  std::vector<char> buf(n + 1);
  vsnprintf(buf.data(), buf.size(), format, args);
  current->append(buf.data(), n);
  return n;
}

} // namespace

void InstallLibbpfPrint() { libbpf_set_print(Print); }

LibbpfLog::LibbpfLog() : outer_(current) { current = this; }

LibbpfLog::~LibbpfLog() {
  if (outer_)
    outer_->append(text_.data(), text_.size());
  current = outer_;
}

void LibbpfLog::append(const char *text, size_t size) {
  text_.append(text, size);
  if (text_.size() > kMaxLog)
    text_.erase(0, text_.size() - kMaxLog);
}

std::string LibbpfLog::take() {
  std::string t;
  t.swap(text_);
  return t;
}

} // namespace vmpeer
