#!/usr/bin/env bash
# A 50 MiB upload_file then download through the real binaries: the bytes must come back
# identical while each process's peak resident memory (VmHWM) stays under 64 MiB.
# Usage: tests/smoke/memory_50mib.sh [BIN_DIR]   (default target/debug)
set -euo pipefail
bin=${1:-target/debug}
limit_kib=$((64 * 1024))
work=$(mktemp -d)
core_port=$((20000 + RANDOM % 20000))
gw_port=$((core_port + 1))
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

export DATABASE_URL="sqlite://$work/mem.db?mode=rwc"
"$bin/core-service" developer add --username memdev --password memory-pw >/dev/null
secret=$("$bin/core-service" app add --developer memdev --name Mem | sed -E 's/.*"secret":"([^"]+)".*/\1/')
"$bin/core-service" serve --listen "127.0.0.1:$core_port" 2>"$work/core.log" &
pids+=($!); core_pid=$!
"$bin/http-gateway" --listen "127.0.0.1:$gw_port" --core-url "http://127.0.0.1:$core_port" 2>"$work/gw.log" &
pids+=($!); gw_pid=$!
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$gw_port/" && break; sleep 0.1; done

api="http://127.0.0.1:$gw_port/api"
dev=(-F developer_username=memdev -F develoer_password=memory-pw -F app_secret="$secret")
head -c $((50 * 1024 * 1024)) /dev/urandom >"$work/app.bin"
curl -sf "$api/admin.php?action=upload_file" "${dev[@]}" -F "file=@$work/app.bin;filename=app.bin" | grep -q '"success"'
[ -n "${MEM_DEBUG:-}" ] && grep -E 'VmHWM|VmRSS' /proc/$core_pid/status >&2
key=$(curl -sf "$api/admin.php?action=create_licences" -F developer_username=memdev -F develoer_password=memory-pw \
    -F app_secret="$secret" -F amount=1 -F access=1 -F 'expire_date=2099-01-01 00:00:00' | tr -d '[]"')
curl -sf "$api/action.php?action=register" -d username=memuser -d email=m@e.x -d password=pw \
    -d app_secret="$secret" -d licence="$key" | grep -q '"success"'
curl -sf -o "$work/back.bin" "$api/action.php?action=download" -d username=memuser -d password=pw -d app_secret="$secret"
cmp "$work/app.bin" "$work/back.bin"

status=0
for name in core gateway; do
    pid=$core_pid; [ $name = gateway ] && pid=$gw_pid
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    echo "$name peak resident memory: $((hwm / 1024)) MiB (limit 64 MiB)"
    [ "$hwm" -lt "$limit_kib" ] || status=1
done
[ $status = 0 ] && echo "50 MiB round trip: identical bytes, both processes under 64 MiB"
exit $status
