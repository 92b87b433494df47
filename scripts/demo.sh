#!/usr/bin/env bash
# `make demo`: build a busybox OCI bundle from Debian's busybox-static and run
# it in a Quiver sandbox, end to end, then show what the guest kernel saw.
set -euo pipefail
BIN=${QUIVER_BIN:?QUIVER_BIN must name the directory of the built binaries}
QCTL="$BIN/qctl"
work=$(mktemp -d /tmp/quiver-demo.XXXXXX)
root="$work/run"
id="demo-$$"
cleanup() {
	"$QCTL" --root "$root" delete --force "$id" >/dev/null 2>&1 || true
	"$QCTL" --root "$root" delete --force "$id-warm" >/dev/null 2>&1 || true
	"$QCTL" --root "$root" delete --force "$id-iod" >/dev/null 2>&1 || true
	[ -s "$root/iod.pid" ] && kill "$(cat "$root/iod.pid")" 2>/dev/null || true
	"$QCTL" --root "$root" pool stop >/dev/null 2>&1 || true
	"$QCTL" --root "$root" daemons stop >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

bundle="$work/bundle"
mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/tmp"
cp /bin/busybox "$bundle/rootfs/bin/busybox"
for applet in sh echo cat id hostname ls ps uname mount unshare true sleep mkdir ln readlink; do
	ln -s busybox "$bundle/rootfs/bin/$applet"
done
( cd "$bundle" && "$QCTL" spec )
# The workload: who am I, where am I, what can I see, and two things a
# sandbox must refuse.
script='echo "hello from $(hostname): $(id)"; echo "processes I can see:"; ps -o pid,user,comm;
echo "mount -t tmpfs: $(mount -t tmpfs none /tmp 2>&1 || true)";
echo "unshare -n: $(unshare -n true 2>&1 || true)"; exit 7'
/usr/bin/python3 - "$bundle/config.json" "$script" <<'PY'
import json, sys
path, script = sys.argv[1], sys.argv[2]
cfg = json.load(open(path))
cfg["process"]["terminal"] = False
cfg["process"]["args"] = ["sh", "-c", script]
cfg["hostname"] = "quiver-demo"
json.dump(cfg, open(path, "w"), indent=2)
PY

echo "== qctl run -d (embedded mode starts quiver-vmmd on first use)"
"$QCTL" --root "$root" run -d --bundle "$bundle" "$id"
for _ in $(seq 100); do
	"$QCTL" --root "$root" state "$id" | grep -q '"status": "stopped"' && break
	sleep 0.05
done
# The supervisor's exit report and per-syscall counters, from vmmd.
"$QCTL" --root "$root" inspect "$id" >"$work/inspect.json"
status=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["exit"]["exit_code"])' "$work/inspect.json")
echo "== the workload exited with status $status (expected 7)"
echo "== what the guest kernel trapped and denied (qctl inspect):"
/usr/bin/python3 -c 'import json,sys
for s in json.load(open(sys.argv[1]))["syscalls"]:
    print("   %-12s trapped %d, denied %d" % (s["name"], s["trapped"], s["denied"]))' "$work/inspect.json"
"$QCTL" --root "$root" delete "$id"
echo "== the syscall policy, first lines (qctl policy):"
# (whole output to a file first: head would close the pipe, and pipefail)
"$QCTL" policy >"$work/policy.txt"
head -8 "$work/policy.txt"
[ "$status" -eq 7 ]

echo "== qctl pool start: quiver-poold makes warm guest kernels ahead of their bundle"
cat >"$work/poold.json" <<'JSON'
{"refill_per_second": 50,
 "pools": {"warm": {"low": 1, "high": 2}, "cgroup": {"low": 1, "high": 2},
           "netns": {"low": 1, "high": 2}, "layer": {"low": 0, "high": 0}}}
JSON
"$QCTL" --root "$root" pool start --config "$work/poold.json"
for _ in $(seq 100); do
	"$QCTL" --root "$root" pool status --json >"$work/pools.json"
	/usr/bin/python3 -c 'import json,sys
w = [p for p in json.load(open(sys.argv[1]))["pools"] if p["kind"] == "warm"][0]
sys.exit(0 if w["ready"] == w["high"] else 1)' "$work/pools.json" && break
	sleep 0.1
done
echo "== qctl run, warm (QCTL_TRACE=1 shows the phases):"
set +e
QCTL_TRACE=1 "$QCTL" --root "$root" run --bundle "$bundle" "$id-warm" >"$work/warm.out" 2>"$work/warm.trace"
warm_status=$?
set -e
sed -n 1p "$work/warm.out"
sed 's/^/   /' "$work/warm.trace"
grep -q "warm guest assigned" "$work/warm.trace"
[ "$warm_status" -eq 7 ]
"$QCTL" --root "$root" pool status
"$QCTL" --root "$root" pool stop

echo "== quiver-iod: the same bundle with io.quiver.iod=on; its file-path calls go to iod"
"$BIN/quiver-iod" --root "$root" --metrics 127.0.0.1:0
/usr/bin/python3 - "$bundle/config.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["root"]["readonly"] = False
cfg["process"]["args"] = ["sh", "-c",
    "mkdir -p /tmp/d /etc && echo \"the sandbox's own /etc\" >/etc/marker && "
    "ln -s /../../../etc /tmp/d/up && echo \"/tmp/d/up -> $(readlink /tmp/d/up):\" && "
    "ls /tmp/d/up/ && cat /tmp/d/up/marker"]
cfg.setdefault("annotations", {})["io.quiver.iod"] = "on"
json.dump(cfg, open(sys.argv[1], "w"), indent=2)
PY
"$QCTL" --root "$root" run --bundle "$bundle" "$id-iod"
echo "== iod's /metrics (ops served):"
/usr/bin/python3 - "$(cat "$root/iod.metrics")" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
ops = {l.split('"')[1]: float(l.split()[-1]) for l in text.splitlines()
       if l.startswith("quiver_iod_ops_total{")}
print("   " + ", ".join("%s %d" % (k, v) for k, v in sorted(ops.items()) if v))
sys.exit(0 if ops.get("open", 0) > 0 and ops.get("stat", 0) > 0 else 1)
PY
kill "$(cat "$root/iod.pid")"
echo "== demo OK"
