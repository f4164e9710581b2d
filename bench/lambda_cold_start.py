#!/usr/bin/env python3
"""Cold start of a function's Lambda binary, measured locally against an emulated Lambda Runtime
API (the HTTP protocol a `provided.al2023` bootstrap speaks): process start to the first
`/invocation/next` request (init: config, tracing, SDK clients) and to the first answered
invocation (by default an `s3:TestEvent`; pass `--event` with an event that makes no AWS call).

    cargo build --release -p cvops-ingest -p cvops-dispatch-training
    python3 bench/lambda_cold_start.py target/release/ingest [--runs 20]
    python3 bench/lambda_cold_start.py target/release/dispatch-training --event '{"Records": []}'
    python3 bench/lambda_cold_start.py target/release/infer --event "$(cat events/function-url-healthz.json)"
"""
import argparse, json, os, pathlib, platform, statistics, subprocess, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = pathlib.Path(__file__).resolve().parent.parent
EVENT = (ROOT / "events" / "s3-test-event.json").read_bytes()


class Runtime(BaseHTTPRequestHandler):
    """Serves one invocation, then holds the next poll until the process is killed."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        if "/extension/" in self.path:
            # An internal extension (infer's graceful-shutdown hook) waits for events: none come.
            server.done.wait(10)
            self.send_response(204)
            self.end_headers()
            return
        if server.first_next is None:
            server.first_next = time.perf_counter()
            self.send_response(200)
            self.send_header("Lambda-Runtime-Aws-Request-Id", "cold-start-1")
            self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30_000))
            self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:ingest")
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(server.event)
        else:
            server.done.wait(10)
            self.send_response(204)
            self.end_headers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        server = self.server
        if self.path.endswith("/extension/register"):
            self.send_response(200)
            self.send_header("Lambda-Extension-Identifier", "cold-start-extension")
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"functionName": "cvops", "functionVersion": "$LATEST", "handler": "bootstrap"}')
            return
        server.responded = time.perf_counter()
        server.response = body
        server.ok = self.path.endswith("/response")
        self.send_response(202)
        self.end_headers()
        server.done.set()


def once(binary, event):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Runtime)
    server.event = event
    server.first_next, server.responded, server.response, server.ok = None, None, None, False
    server.done = threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_port}", AWS_LAMBDA_FUNCTION_NAME="ingest",
               AWS_LAMBDA_FUNCTION_MEMORY_SIZE="512", AWS_LAMBDA_FUNCTION_VERSION="$LATEST", AWS_REGION="us-east-1",
               AWS_ACCESS_KEY_ID="cold", AWS_SECRET_ACCESS_KEY="start", CVOPS_STORE_BUCKET="store", CVOPS_TABLE="cvops", CVOPS_MODELS_BUCKET="models",
               CVOPS_DEAD_LETTER_QUEUE_URL="https://sqs.us-east-1.amazonaws.com/123456789012/cvops-training-dlq",
               CVOPS_TRAINER_IMAGE="cvops-trainer:latest", CVOPS_JOB_QUEUE="cvops-training", CVOPS_JOB_DEFINITION="cvops-trainer",
               CVOPS_TRAINING_QUEUE_URL="https://sqs.us-east-1.amazonaws.com/123456789012/cvops-training",
               AWS_LAMBDA_LOG_FORMAT="JSON", AWS_LAMBDA_LOG_LEVEL="WARN")
    start = time.perf_counter()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server.done.wait(30)
    proc.kill()
    _, err = proc.communicate()
    server.shutdown()
    if not server.ok:
        raise SystemExit(f"no successful response: {server.response!r} {err.decode()[-2000:]}")
    return (server.first_next - start) * 1000, (server.responded - start) * 1000, json.loads(server.response)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--event", help="the event JSON to send (default: events/s3-test-event.json)")
    args = ap.parse_args()
    event = args.event.encode() if args.event else EVENT
    inits, firsts = [], []
    for _ in range(args.runs):
        init, first, response = once(args.binary, event)
        inits.append(init)
        firsts.append(first)
    size = os.path.getsize(args.binary) / 1e6
    print(f"{pathlib.Path(args.binary).name} ({size:.1f} MB, {platform.machine()}): init median {statistics.median(inits):.1f} ms "
          f"(p90 {sorted(inits)[int(len(inits) * 0.9) - 1]:.1f}), first answered invocation median {statistics.median(firsts):.1f} ms; "
          f"{args.runs} runs; response {json.dumps(response)[:120]}")


if __name__ == "__main__":
    main()
