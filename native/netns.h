// Running work inside another network namespace. setns() changes the netns of
// the calling thread only, so each call gets a fresh native thread that enters
// the namespace, does the work and ends; the JS thread and libuv's pool
// threads never change namespace. Interface names, ifindexes, netlink sockets
// and tcx attachments made there all resolve in that namespace.
#pragma once

#include "fd.h"

#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>

namespace vmpeer {

// Runs `body` on the calling thread, which must be one of ours: it first
// enters the netns at `path` when there is one. Returns what `body` (or the
// setns) threw, with libbpf's messages of this thread in a Failure's log.
std::exception_ptr RunCaptured(const std::optional<std::string> &path, const std::function<void()> &body);

// The same for a netns given by an fd (one the caller opened: it holds that
// namespace however its file is renamed or removed meanwhile); `label` names it in errors.
std::exception_ptr RunCaptured(int netnsFd, const std::string &label, const std::function<void()> &body);

// Runs `body` on a new thread inside the netns at `path` and waits for it.
// A Failure thrown there (or on entering the netns) is rethrown here.
void RunInNetns(const std::string &path, const std::function<void()> &body);

// Starts `body` on a new detached thread inside the netns at `path` (the
// caller's netns when absent) and returns at once; `done` runs on that thread
// afterwards with what `body` threw, if anything.
void StartInNetns(const std::optional<std::string> &path, std::function<void()> body,
                  std::function<void(std::exception_ptr)> done);

// The same for a netns given by an fd, which the new thread owns (and closes
// once it has entered the namespace).
void StartInNetns(UniqueFd netns, const std::string &label, std::function<void()> body,
                  std::function<void(std::exception_ptr)> done);

// The same for a netns that may be absent: then `body` runs right here, in
// the caller's netns. Returns what `body` returns.
template <typename Fn> auto InNetns(const std::optional<std::string> &path, Fn &&body) {
  using Result = std::invoke_result_t<Fn>;
  if (!path)
    return body();
  if constexpr (std::is_void_v<Result>) {
    RunInNetns(*path, body);
  } else {
    std::optional<Result> result;
    RunInNetns(*path, [&] { result.emplace(body()); });
    return std::move(*result);
  }
}

} // namespace vmpeer
