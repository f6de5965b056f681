# ---- journal and rollback ----------------------------------------------------
nsgen_current=0      # the step being run
nsgen_signal=""      # exit status to report if a signal arrived
declare -a nsgen_titles=()

# While a step runs, its error output is kept in a file (one per lane) and shown when the
# step ends: if it fails, the summary quotes the line that says what went wrong.
exec {nsgen_stderr}>&2
nsgen_errors=$NSGEN_STATE/errors

nsgen_begin() {
  nsgen_current=$1
  nsgen_titles[$1]=$2
  printf 'begin %s\n' "$1" >>"$NSGEN_STATE/journal"
  nsgen_log "$1/$NSGEN_STEPS $2"
  exec 2>"$nsgen_errors"
}
nsgen_end() {
  nsgen_show_errors
  printf 'done %s\n' "$1" >>"$NSGEN_STATE/journal"
}
# Back to the real stderr, showing what the step wrote there.
nsgen_show_errors() {
  exec 2>&"$nsgen_stderr"
  if [[ -s $nsgen_errors ]]; then
    cat -- "$nsgen_errors" >&2
    : >"$nsgen_errors"
  fi
}
# The line of an error output (on stdin) that says what went wrong: the last that is not a
# hint to read the help, with where in its input a batch program failed (nsgen up picks the
# same line: nsgen/executor.py, failure_reason).
nsgen_reason() {
  local line reason="" at=""
  while IFS= read -r line; do
    case $line in
      "Error occurred at line: "*) at=" (input line ${line##*: })" ;;
      "Command failed "*:*) at=" (input line ${line##*:})" ;;
      "Try \`"*"' for more information"*) ;;
      *[![:space:]]*) reason=$line ;;
    esac
  done
  printf '%s%s' "${reason:-(no error output)}" "$at"
}
nsgen_failed() { # step status: say which step failed, and why
  local reason="(no error output)"
  if [[ -s $nsgen_errors ]]; then reason=$(nsgen_reason <"$nsgen_errors"); fi
  nsgen_show_errors
  nsgen_log "step $1/$NSGEN_STEPS (${nsgen_titles[$1]:-before the first step}) failed with exit status $2: $reason"
}

# Runs steps FIRST..LAST (nsgen_do_N) in NSGEN_LANES lanes at once (default: one per
# CPU). Only steps confined to one namespace run this way; they need no undo, so on a
# failure the rollback starts from LAST.
nsgen_lane_pids=()
nsgen_lane_failed=0
nsgen_lanes() {
  local first=$1 last=$2 lanes=${NSGEN_LANES:-$(nproc 2>/dev/null || echo 2)} lane pid failed=0
  local i
  nsgen_current=$last
  for ((lane = 0; lane < lanes && first + lane <= last; lane++)); do
    (
      # set -e ends the lane at a failing command; the ERR trap (kept in functions by
      # set -E) says which step it was
      set -E
      trap 'nsgen_failed "$i" "$?"' ERR
      nsgen_errors=$NSGEN_STATE/errors.$lane
      for ((i = first + lane; i <= last; i += lanes)); do
        nsgen_begin "$i" "${nsgen_titles[$i]}"
        "nsgen_do_$i"
        nsgen_end "$i"
      done
    ) &
    nsgen_lane_pids+=($!)
  done
  for pid in "${nsgen_lane_pids[@]}"; do
    wait "$pid" || failed=1
  done
  nsgen_lane_pids=()
  if ((failed)); then nsgen_lane_failed=1; fi
  return "$failed"
}

# Runs on every exit once the state directory is claimed. On failure it undoes
# steps nsgen_current..1 (the failed step's partial effects included).
nsgen_finish() {
  local status=$1 code=3 i rc leftovers=()
  trap - EXIT INT TERM
  ((status != 0)) || return 0
  set +e
  if ((${#nsgen_lane_pids[@]})); then  # stop lanes still running, then undo
    kill "${nsgen_lane_pids[@]}" 2>/dev/null
    wait "${nsgen_lane_pids[@]}" 2>/dev/null
  fi
  if [[ -n $nsgen_signal ]]; then
    code=$nsgen_signal
    nsgen_show_errors
    nsgen_log "interrupted during step $nsgen_current/$NSGEN_STEPS: rolling back"
  elif ((nsgen_lane_failed)); then
    nsgen_log "rolling back"  # the failed step said so itself
  else
    nsgen_failed "$nsgen_current" "$status"
    nsgen_log "rolling back"
  fi
  for ((i = nsgen_current; i >= 1; i--)); do
    declare -F "nsgen_undo_$i" >/dev/null || continue
    nsgen_log "undo $i/$NSGEN_STEPS ${nsgen_titles[$i]}"
    # (a subshell outside any && or || list, so that set -e applies inside it)
    (set -e; "nsgen_undo_$i")
    rc=$?
    ((rc == 0)) || leftovers+=("$i/$NSGEN_STEPS ${nsgen_titles[$i]}")
  done
  if ((${#leftovers[@]})); then
    nsgen_log "rollback incomplete; these steps could not be undone:"
    printf '[nsgen]   %s\n' "${leftovers[@]}" >&2
    nsgen_log "the record stays in $NSGEN_STATE; fix the cause and run teardown.sh"
    exit 4
  fi
  rm -rf -- "$NSGEN_STATE"
  nsgen_log "rolled back: everything this run created is gone"
  exit "$code"
}
