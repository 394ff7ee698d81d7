"""Times one ONNX model on one runtime peer of the CPU benchmark: ONNX Runtime, OpenVINO fp32 or
OpenVINO bf16 (INFERENCE_PRECISION_HINT), at a fixed thread count, on a saved input; prints one
JSON object (median seconds, runs, compile seconds) and saves the first image's output for the
agreement check.

Runs inside the peers' venv (bench/models/compare_peers.py makes it); never imports torch.
  python peer_runtime.py --engine ort|ov_fp32|ov_bf16 --onnx M.onnx --input X.npy --threads T
      --reps R --max-seconds S --output Y.npy
"""
import argparse
import json
import statistics
import time

import numpy as np


def make_runner(engine, onnx_path, shape, threads):
    if engine == "ort":
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    import openvino as ov
    core = ov.Core()
    model = core.read_model(onnx_path)
    model.reshape({model.inputs[0].get_any_name(): list(shape)})  # static shapes, as compiled for
    config = {
        "INFERENCE_NUM_THREADS": threads,
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "bf16" if engine == "ov_bf16" else "f32",
    }
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    return lambda x: np.array(request.infer({0: x})[compiled.outputs[0]])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", required=True, choices=["ort", "ov_fp32", "ov_bf16"])
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-seconds", type=float, default=20.0)
    ap.add_argument("--output", required=True)
    args = ap.parse_args()

    x = np.ascontiguousarray(np.load(args.input), dtype=np.float32)
    t0 = time.perf_counter()
    run = make_runner(args.engine, args.onnx, x.shape, args.threads)
    compile_s = time.perf_counter() - t0
    y = run(x)  # warm-up; its first image is the one compared
    np.save(args.output, np.ascontiguousarray(y[:1], dtype=np.float32))
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t0)
        if sum(times) > args.max_seconds:
            break
    print(json.dumps({"median_s": statistics.median(times), "runs": len(times), "compile_s": compile_s}))


if __name__ == "__main__":
    main()
