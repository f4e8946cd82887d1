#!/usr/bin/env bash
# `make demo`: see Toktoken work without a GPU, in about five minutes.
# Builds (once) and starts a real local model server (llama-cpp-python +
# Gemma 3 270M, CPU), starts the gateway wired to it, and prints what to paste
# into a shell to point Claude Code at it. Ctrl-C stops both.
#
# env: DEMO_BACKEND_PORT (8000), PORT (gateway, 3456), API_KEY (demo-key),
#      RB_N_CTX (context window of the model server, 4096)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
backend_port="${DEMO_BACKEND_PORT:-8000}"
gateway_port="${PORT:-3456}"
key="${API_KEY:-demo-key}"
n_ctx="${RB_N_CTX:-4096}"
python="${PYTHON_BIN:-$root/.venv/bin/python}"

echo "==> starting the local model server on 127.0.0.1:$backend_port (the first run compiles llama.cpp: a few minutes)"
backend_pid=$(PORT="$backend_port" RB_N_CTX="$n_ctx" bash "$here/start_real_backend.sh" | tail -n 1)

gateway_pid=""
cleanup() {
  echo
  echo "==> stopping the gateway and the model server"
  [ -n "$gateway_pid" ] && kill "$gateway_pid" 2>/dev/null || true
  kill "$backend_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

echo "==> starting Toktoken on 127.0.0.1:$gateway_port"
HOST=127.0.0.1 PORT="$gateway_port" API_KEY="$key" \
  VLLM_URL="http://127.0.0.1:$backend_port" VLLM_MODEL=gemma-3-270m VLLM_CONTEXT="$n_ctx" \
  "$python" -m toktoken serve &
gateway_pid=$!

for _ in $(seq 1 100); do
  curl -fs -o /dev/null "http://127.0.0.1:$gateway_port/health" && break
  sleep 0.2
done

cat <<MSG

Toktoken is serving on http://127.0.0.1:$gateway_port, in front of Gemma 3 270M.
(A tiny *base* model: its answers are nonsense, but every byte goes through
the real protocol path: streaming, tool calls, token counts.)

Paste into another shell:

  export ANTHROPIC_BASE_URL=http://127.0.0.1:$gateway_port
  export ANTHROPIC_API_KEY=$key
  export ANTHROPIC_MODEL=gemma-3-270m
  export CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1
  export CLAUDE_CODE_MAX_OUTPUT_TOKENS=256
  claude -p "say hello"

or try:  curl -s http://127.0.0.1:$gateway_port/v1/messages -H 'x-api-key: $key' \\
           -d '{"model":"any","max_tokens":40,"messages":[{"role":"user","content":"Hello"}]}'

Ctrl-C stops both.
MSG
wait "$gateway_pid"
