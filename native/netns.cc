#include "netns.h"

#include "errors.h"
#include "fd.h"
#include "log.h"

#include <fcntl.h>
#include <sched.h>

#include <thread>

namespace vmpeer {

namespace {

std::exception_ptr Captured(const std::function<void()> &enter, const std::function<void()> &body) {
  LibbpfLog log;
  try {
    enter();
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

} // namespace

std::exception_ptr RunCaptured(const std::optional<std::string> &path, const std::function<void()> &body) {
  return Captured(
      [&] {
        if (!path)
          return;
        UniqueFd ns(CheckErrno(open(path->c_str(), O_RDONLY | O_CLOEXEC), "open netns", *path));
        CheckErrno(setns(ns.get(), CLONE_NEWNET), "setns", *path);
      },
      body);
}

std::exception_ptr RunCaptured(int netnsFd, const std::string &label, const std::function<void()> &body) {
  return Captured([&] { CheckErrno(setns(netnsFd, CLONE_NEWNET), "setns", label); }, body);
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

void StartInNetns(UniqueFd netns, const std::string &label, std::function<void()> body,
                  std::function<void(std::exception_ptr)> done) {
  auto ns = std::make_shared<UniqueFd>(std::move(netns)); // std::function needs a copyable closure
  std::thread([ns, label, body = std::move(body), done = std::move(done)] {
    std::exception_ptr error = RunCaptured(ns->get(), label, [&] {
      ns->reset(); // entered: the thread holds the namespace now
      body();
    });
    ns->reset();
    done(error);
  }).detach();
}

} // namespace vmpeer
