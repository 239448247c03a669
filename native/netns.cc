#include "netns.h"

#include "errors.h"
#include "fd.h"
#include "log.h"

#include <fcntl.h>
#include <sched.h>

#include <thread>

namespace vmpeer {

std::exception_ptr RunCaptured(const std::optional<std::string> &path, const std::function<void()> &body) {
  LibbpfLog log;
  try {
    if (path) {
      UniqueFd ns(CheckErrno(open(path->c_str(), O_RDONLY | O_CLOEXEC), "open netns", *path));
      CheckErrno(setns(ns.get(), CLONE_NEWNET), "setns", *path);
    }
    body();
  } catch (Failure &f) {
    if (f.log.empty())
      f.log = log.take();
    return std::current_exception();
  } catch (...) {
    return std::current_exception();
  }
  return nullptr;
}

void RunInNetns(const std::string &path, const std::function<void()> &body) {
  std::exception_ptr error;
  std::thread worker([&] { error = RunCaptured(path, body); });
  worker.join();
  if (error)
    std::rethrow_exception(error);
}

void StartInNetns(const std::optional<std::string> &path, std::function<void()> body,
                  std::function<void(std::exception_ptr)> done) {
  std::thread([path, body = std::move(body), done = std::move(done)] { done(RunCaptured(path, body)); }).detach();
}

} // namespace vmpeer
