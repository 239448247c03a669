#include "netns.h"

#include "errors.h"
#include "fd.h"
#include "log.h"

#include <fcntl.h>
#include <sched.h>

#include <exception>
#include <thread>

namespace vmpeer {

void RunInNetns(const std::string &path, const std::function<void()> &body) {
  std::exception_ptr error;
  std::thread worker([&] {
    LibbpfLog log;
    try {
      UniqueFd ns(CheckErrno(open(path.c_str(), O_RDONLY | O_CLOEXEC), "open netns", path));
      CheckErrno(setns(ns.get(), CLONE_NEWNET), "setns", path);
      body();
    } catch (Failure &f) {
      if (f.log.empty())
        f.log = log.take();
      error = std::current_exception();
    } catch (...) {
      error = std::current_exception();
    }
  });
  worker.join();
  if (error)
    std::rethrow_exception(error);
}

} // namespace vmpeer
