#!/usr/bin/python3
"""Integration test of sluice_serve's gRPC endpoint (--grpc-port), run by ctest: the Open Inference
Protocol's inference.GRPCInferenceService with the demo model, called from Python's gRPC (Debian's
python3-grpcio) with messages that protoc generates from the server's own .proto for Python -- a
protobuf implementation apart from the server's.

Checks health, readiness, metadata, ModelInfer of the raw network with raw and with typed contents
(the same logits), of the segmenter with an encoded image in BYTES, the status codes of malformed
requests, unknown models and messages over --grpc-max-message-mib, that a port in use or equal to
the HTTP port stops the server with status 2, and that SIGINT answers every call in flight and exits 0.

Skipped (77) without python3-grpcio/python3-protobuf, protoc or the demo model. Bounded: every call
has a deadline, every wait a limit, every server started is killed at exit.
    serve_grpc_test.py --server BIN --model MODEL_JSON --proto FILE --protoc BIN --work DIR
"""
import argparse
import atexit
import os
import signal
import socket
import struct
import subprocess
import sys
import time

HOST = "127.0.0.1"  # loopback only, always
SKIP = 77
SERVICE = "/inference.GRPCInferenceService/"

failures = []
passed = []
procs = []


def check(cond, what):
    print(("PASS " if cond else "FAIL ") + what, flush=True)
    (passed if cond else failures).append(what)
    return cond


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start(args, *flags):
    log = open(os.path.join(args.work, "server-%d.log" % len(procs)), "w")
    proc = subprocess.Popen([args.server, "--model", "demo=" + args.model, "--address", HOST, "--port", "0"] + list(flags),
                            stdout=subprocess.PIPE, stderr=log, text=True)
    procs.append(proc)
    return proc


@atexit.register
def kill_all():
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def main():
    ap = argparse.ArgumentParser()
    for flag in ("--server", "--model", "--proto", "--protoc", "--work"):
        ap.add_argument(flag, required=True)
    args = ap.parse_args()
    try:
        import grpc  # noqa: F401 -- Debian's python3-grpcio
        import google.protobuf  # noqa: F401
    except ImportError as e:
        print("SKIP: %s (tools/install-deps.sh installs python3-grpcio and python3-protobuf)" % e)
        return SKIP
    if not os.path.exists(args.model) or not os.path.exists(args.protoc):
        print("SKIP: the demo model or protoc is missing")
        return SKIP
    os.makedirs(args.work, exist_ok=True)
    proto_root = os.path.dirname(os.path.dirname(os.path.dirname(args.proto)))  # .../proto
    subprocess.run([args.protoc, "--proto_path=" + proto_root, "--python_out=" + args.work, args.proto], check=True)
    sys.path.insert(0, os.path.join(args.work, "sluice", "grpc"))
    import grpc
    import grpc_predict_v2_pb2 as pb

    port = free_port()
    server = start(args, "--grpc-port", str(port), "--grpc-max-message-mib", "1")
    first = server.stdout.readline()
    second = server.stdout.readline()
    check(first.startswith("listening on http://"), "HTTP listens first: " + first.strip())
    check(second.strip() == "grpc listening on %s:%d" % (HOST, port), "then gRPC: " + second.strip())
    channel = grpc.insecure_channel("%s:%d" % (HOST, port))

    def rpc(name, request, response_type, timeout=60):
        call = channel.unary_unary(SERVICE + name, request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=response_type.FromString)
        return call(request, timeout=timeout)

    def code_of(name, request, response_type):
        try:
            rpc(name, request, response_type)
            return grpc.StatusCode.OK, ""
        except grpc.RpcError as e:
            return e.code(), e.details()

    check(rpc("ServerLive", pb.ServerLiveRequest(), pb.ServerLiveResponse).live, "ServerLive: live")
    deadline = time.time() + 300
    while not rpc("ServerReady", pb.ServerReadyRequest(), pb.ServerReadyResponse).ready and time.time() < deadline:
        time.sleep(0.2)
    check(rpc("ServerReady", pb.ServerReadyRequest(), pb.ServerReadyResponse).ready, "ServerReady once loaded")
    check(rpc("ModelReady", pb.ModelReadyRequest(name="demo"), pb.ModelReadyResponse).ready, "ModelReady demo")
    check(not rpc("ModelReady", pb.ModelReadyRequest(name="nope"), pb.ModelReadyResponse).ready, "ModelReady nope: false")
    meta = rpc("ServerMetadata", pb.ServerMetadataRequest(), pb.ServerMetadataResponse)
    check(meta.name == "sluice" and meta.version != "", "ServerMetadata: %s %s" % (meta.name, meta.version))
    net = rpc("ModelMetadata", pb.ModelMetadataRequest(name="demo_network"), pb.ModelMetadataResponse)
    check(net.inputs[0].datatype == "FP32" and len(net.inputs[0].shape) == 4, "ModelMetadata demo_network: FP32 NCHW input")
    code, _ = code_of("ModelMetadata", pb.ModelMetadataRequest(name="nope"), pb.ModelMetadataResponse)
    check(code == grpc.StatusCode.NOT_FOUND, "ModelMetadata of an unknown model: NOT_FOUND")

    # The raw network: raw contents and typed contents of the same input give the same logits.
    _, c, h, w = net.inputs[0].shape
    n = c * h * w
    values = [((i * 37) % 101) / 101.0 - 0.5 for i in range(n)]
    raw = struct.pack("<%df" % n, *values)

    def network_request():
        r = pb.ModelInferRequest(model_name="demo_network", id="n1")
        t = r.inputs.add(name="INPUT", datatype="FP32")
        t.shape.extend([1, c, h, w])
        return r, t

    r, _ = network_request()
    r.raw_input_contents.append(raw)
    out = rpc("ModelInfer", r, pb.ModelInferResponse)
    check(out.id == "n1" and out.outputs[0].name == "LOGITS" and list(out.outputs[0].shape)[:2] == [1, 1],
          "ModelInfer demo_network raw: LOGITS %s" % list(out.outputs[0].shape))
    check(len(out.raw_output_contents[0]) == 4 * out.outputs[0].shape[2] * out.outputs[0].shape[3],
          "LOGITS raw bytes match its shape")
    r2, t2 = network_request()
    t2.contents.fp32_contents.extend(values)
    out2 = rpc("ModelInfer", r2, pb.ModelInferResponse)
    check(out2.raw_output_contents[0] == out.raw_output_contents[0], "typed fp32_contents: the same logits as raw")

    # The segmenter with an encoded image.
    png = open(os.path.join(os.path.dirname(args.model), "..", "samples", "spheroids_0000.png"), "rb").read()
    img = pb.ModelInferRequest(model_name="demo")
    t = img.inputs.add(name="IMAGE", datatype="BYTES")
    t.shape.append(1)
    t.contents.bytes_contents.append(png)
    out = rpc("ModelInfer", img, pb.ModelInferResponse)
    names = [o.name for o in out.outputs]
    check("MASK" in names and "POLYGONS" in names, "ModelInfer demo with a PNG in bytes_contents: %s" % names)

    # Errors.
    bad, bt = network_request()
    bad.raw_input_contents.append(raw)
    bt.contents.fp32_contents.append(1.0)
    code, msg = code_of("ModelInfer", bad, pb.ModelInferResponse)
    check(code == grpc.StatusCode.INVALID_ARGUMENT and "raw_input_contents" in msg, "contents and raw: INVALID_ARGUMENT (%s)" % msg)
    bad, _ = network_request()
    bad.raw_input_contents.append(raw[:-1])
    code, msg = code_of("ModelInfer", bad, pb.ModelInferResponse)
    check(code == grpc.StatusCode.INVALID_ARGUMENT, "a short raw input: INVALID_ARGUMENT (%s)" % msg)
    bad, _ = network_request()
    bad.model_name = "nope"
    bad.raw_input_contents.append(raw)
    code, _ = code_of("ModelInfer", bad, pb.ModelInferResponse)
    check(code == grpc.StatusCode.NOT_FOUND, "an unknown model: NOT_FOUND")
    big = pb.ModelInferRequest(model_name="demo")
    t = big.inputs.add(name="IMAGE", datatype="BYTES")
    t.shape.append(1)
    t.contents.bytes_contents.append(b"\0" * (2 << 20))
    code, _ = code_of("ModelInfer", big, pb.ModelInferResponse)
    check(code == grpc.StatusCode.RESOURCE_EXHAUSTED, "a 2 MiB message over --grpc-max-message-mib 1: RESOURCE_EXHAUSTED")

    # A port in use, and the HTTP port, stop a second server at start.
    for flags, what in ((["--grpc-port", str(port)], "a gRPC port in use"),
                        (["--port", str(port), "--grpc-port", str(port)], "the gRPC port equal to the HTTP port")):
        other = start(args, *flags)
        try:
            rc = other.wait(120)
        except subprocess.TimeoutExpired:
            rc = None
        check(rc == 2, "%s: exit status 2 (got %s)" % (what, rc))

    # SIGINT with calls in flight: each is answered (by its model, within the drain time), exit 0.
    futures = []
    for i in range(8):
        call = channel.unary_unary(SERVICE + "ModelInfer", request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=pb.ModelInferResponse.FromString)
        futures.append(call.future(img, timeout=120))
    time.sleep(0.2)
    server.send_signal(signal.SIGINT)
    codes = []
    for f in futures:
        try:
            f.result()
            codes.append("OK")
        except grpc.RpcError as e:
            codes.append("%s: %s" % (e.code().name, e.details()))
    # A call that reached the server before the signal is answered by its model; one after it is
    # refused as the server shuts down.
    check(all(c == "OK" or c.startswith("UNAVAILABLE") for c in codes) and "OK" in codes,
          "calls in flight at SIGINT: %s" % codes)
    try:
        rc = server.wait(120)
    except subprocess.TimeoutExpired:
        rc = None
    check(rc == 0, "SIGINT: exit status 0 (got %s)" % rc)

    print("serve_grpc: %d passed, %d failed" % (len(passed), len(failures)))
    return 1 if failures else 0

if __name__ == "__main__":
    sys.exit(main())
