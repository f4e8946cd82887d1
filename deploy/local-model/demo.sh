#!/usr/bin/env bash
# `make demo`: see Toktoken work without a GPU, in about five minutes.
# Builds (once) and starts a real local model server (llama.cpp's llama-server,
# built portably, serving Gemma 3 270M on the CPU), starts the gateway wired to
# it, and prints what to paste into a shell to point Claude Code at it
# (`python -m toktoken claude-env`). Ctrl-C stops both.
#
# env: DEMO_BACKEND_PORT (8080), PORT (gateway, 3456), API_KEY (demo-key),
#      LS_CTX (context window of the model server, 32768)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
backend_port="${DEMO_BACKEND_PORT:-8080}"
gateway_port="${PORT:-3456}"
key="${API_KEY:-demo-key}"
python="${PYTHON_BIN:-$root/.venv/bin/python}"

echo "==> starting llama-server on 127.0.0.1:$backend_port (the first run compiles llama.cpp: about 5 minutes)"
backend_pid=$(PORT="$backend_port" LS_CTX="${LS_CTX:-32768}" bash "$here/start_llama_server.sh" | tail -n 1)

gateway_pid=""
cleanup() {
  echo
  echo "==> stopping the gateway and the model server"
  [ -n "$gateway_pid" ] && kill "$gateway_pid" 2>/dev/null || true
  kill "$backend_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

export HOST=127.0.0.1 PORT="$gateway_port" API_KEY="$key" \
  VLLM_URL="http://127.0.0.1:$backend_port" VLLM_MODEL=gemma-3-270m
echo "==> starting Toktoken on 127.0.0.1:$gateway_port"
"$python" -m toktoken serve &
gateway_pid=$!

for _ in $(seq 1 100); do
  curl -fs -o /dev/null "http://127.0.0.1:$gateway_port/health" && break
  sleep 0.2
done

cat <<MSG

Toktoken is serving on http://127.0.0.1:$gateway_port, in front of Gemma 3 270M.
(A tiny *base* model: its answers are nonsense, but every byte goes through
the real protocol path: streaming, tool calls, token counts, the prefix cache.)

Paste into another shell (from \`python -m toktoken claude-env\`; the model's
window is read off the running server):

MSG
"$python" -m toktoken claude-env --key "$key" | sed 's/^/  /'
cat <<MSG
  export CLAUDE_CODE_MAX_OUTPUT_TOKENS=256
  claude -p "say hello"

or try:  curl -s http://127.0.0.1:$gateway_port/v1/messages -H 'x-api-key: $key' \\
           -d '{"model":"any","max_tokens":40,"messages":[{"role":"user","content":"Hello"}]}'

Ctrl-C stops both.
MSG
wait "$gateway_pid"
