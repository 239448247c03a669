// testRun(progFd, request): BPF_PROG_TEST_RUN on a built frame.
#include "args.h"
#include "errors.h"
#include "exports.h"

#include <bpf/bpf.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace vmpeer {

namespace {

Napi::Value TestRun(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Args args(info, "testRun");
  int fd = args.fd(0, "progFd");
  Fields request(args.object(1, "request"), "testRun");
  Napi::Buffer<uint8_t> data = request.buffer("data");
  uint32_t repeat = request.optUint32("repeat").value_or(1);
  std::optional<Napi::Buffer<uint8_t>> ctx = request.optBuffer("ctx");
  uint32_t dataSizeOut = request.optUint32("dataSizeOut").value_or(data.Length() + 256);
  if (repeat > INT32_MAX)
    request.bad("repeat is too large");

  std::vector<uint8_t> dataOut(dataSizeOut);
  std::vector<uint8_t> ctxOut(ctx ? ctx->Length() : 0);
  bpf_test_run_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.sz = sizeof opts;
  opts.data_in = data.Data();
  opts.data_size_in = data.Length();
  opts.data_out = dataOut.data();
  opts.data_size_out = dataSizeOut;
  opts.repeat = static_cast<int>(repeat);
  if (ctx) {
    opts.ctx_in = ctx->Data();
    opts.ctx_size_in = ctx->Length();
    opts.ctx_out = ctxOut.data();
    opts.ctx_size_out = ctxOut.size();
  }
  Check(bpf_prog_test_run_opts(fd, &opts), "bpf_prog_test_run_opts", "prog fd " + std::to_string(fd));

  Napi::Object result = Napi::Object::New(env);
  result.Set("retval", static_cast<int32_t>(opts.retval));
  result.Set("data", Napi::Buffer<uint8_t>::Copy(env, dataOut.data(), std::min<size_t>(opts.data_size_out, dataOut.size())));
  result.Set("durationNs", opts.duration);
  if (ctx)
    result.Set("ctx", Napi::Buffer<uint8_t>::Copy(env, ctxOut.data(), std::min<size_t>(opts.ctx_size_out, ctxOut.size())));
  return result;
}

} // namespace

void InitTestRun(Napi::Env env, Napi::Object exports) {
  exports.Set("testRun", Napi::Function::New<Guard<TestRun>>(env, "testRun"));
}

} // namespace vmpeer
