# Quiver — one Makefile for the whole tree.
#
#   make            build everything into $(BUILD)
#   make SAN=1      the same with ASan + UBSan, into build-san
#   make deps       install every Debian package the build, tests and demo need
#   make test       deps + build + unit tests (plain and sanitized) + fuzz smoke + system tests
#   make demo       deps + build + run a real OCI bundle in a Quiver sandbox
#   make fmt        reformat;  make fmt-check  fail on unformatted code
#   make install    binaries, systemd units and docs into $(DESTDIR)$(PREFIX)
#
# Sources are discovered per folder: every .c in libcommon/ goes into
# libcommon.a, every .c in guest/ but main.c into libguest.a, and each
# program folder links its own .c files.  Adding a file needs no edit here.

SAN ?= 0
ifeq ($(SAN),1)
BUILD ?= build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD ?= build
SANFLAGS :=
endif

CC      ?= gcc
CLANG   ?= clang
PYTHON  ?= /usr/bin/python3
PREFIX  ?= /usr/local
DESTDIR ?=

WARN     := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-missing-field-initializers
CPPFLAGS := -D_GNU_SOURCE -I.
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 $(WARN) -fno-strict-aliasing -fstack-protector-strong $(SANFLAGS)
LDFLAGS  += $(SANFLAGS)

# Third-party libraries.  Where Debian ships an archive and we are not
# sanitizing, the small libraries are linked statically: every sandbox start
# execs quiver-guest, and each shared object costs the dynamic loader time.
ifeq ($(SAN),1)
STATIC_ON  :=
STATIC_OFF :=
else
STATIC_ON  := -Wl,-Bstatic
STATIC_OFF := -Wl,-Bdynamic
endif
# nng (and the mbedtls it links for its TLS transport, unused here) too: qctl
# is exec'd for each OCI command, and loading four shared objects was 0.6 ms
# of every `qctl run` (1.45 -> 0.86 ms for `qctl --version`).
LIB_NNG     := $(STATIC_ON) -lnng -lmbedtls -lmbedx509 -lmbedcrypto $(STATIC_OFF)
LIB_MSGPACK := $(STATIC_ON) -lmsgpackc $(STATIC_OFF)
LIB_GUEST   := $(STATIC_ON) -lseccomp -ljansson -lcap $(STATIC_OFF)
LIB_UV      := -luv
LIB_CMOCKA  := -lcmocka
# netd: netlink (libmnl) and the nftables ruleset (libnftables)
LIB_NET     := -lmnl -lnftables
# netd's node-to-node transport: RDMA verbs (rdma-core), when a device exists
LIB_RDMA    := -libverbs -lrdmacm
# sd_notify (libcommon/notify.c): the daemons only.  Debian ships no static
# libsystemd, and it is not on the sandbox start path.
LIB_SYSTEMD := -lsystemd

COMMON_SRC := $(wildcard libcommon/*.c)
GUEST_SRC  := $(filter-out guest/main.c,$(wildcard guest/*.c))
VMMD_SRC   := $(wildcard services/vmmd/*.c)
POOLD_SRC  := $(filter-out services/poold/main.c,$(wildcard services/poold/*.c))
IOD_SRC    := $(filter-out services/iod/main.c,$(wildcard services/iod/*.c))
# netd's library (bridge mode, the transport): what unit tests and fuzz
# targets link; the daemon's own files (the loop, the broker, the node
# relays) are quiver-netd's alone.
NETD_DAEMON_SRC := $(wildcard services/netd/main.c services/netd/broker.c services/netd/nodes.c \
			   services/netd/wake.c)
NETD_SRC   := $(filter-out $(NETD_DAEMON_SRC),$(wildcard services/netd/*.c))
QCTL_SRC   := $(wildcard qctl/*.c)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
FUZZ_SRC   := $(wildcard tests/fuzz/fuzz_*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIBCOMMON := $(BUILD)/libcommon.a
LIBGUEST  := $(BUILD)/libguest.a
LIBPOOLD  := $(BUILD)/libpoold.a
LIBIOD    := $(BUILD)/libiod.a
LIBNETD   := $(BUILD)/libnetd.a
BIN       := $(BUILD)/bin
PROGRAMS  := $(BIN)/qctl $(BIN)/quiver-guest $(BIN)/quiver-vmmd $(BIN)/quiver-poold $(BIN)/quiver-iod \
	    $(BIN)/quiver-netd
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
# bench/loadgen.c drives vmmd's API (bench/api.py); netd_transport.c
# measures netd's node-to-node transport against plain TCP; cgroup_alloc.c
# is compiled by its own script.
BENCH_BINS := $(BUILD)/bench/loadgen $(BUILD)/bench/netd_transport
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))

.PHONY: all deps test unit-test system-test fuzz fuzz-smoke demo fmt fmt-check clean install docs
MAN := $(BUILD)/man/qctl.1
all: $(PROGRAMS) $(UNIT_BINS) $(BENCH_BINS) $(MAN)

# qctl's man page is printed by qctl from the table its help comes from.
$(MAN): $(BIN)/qctl
	@mkdir -p $(dir $@)
	$(BIN)/qctl help --man > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIBCOMMON): $(call obj,$(COMMON_SRC))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIBGUEST): $(call obj,$(GUEST_SRC))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIBPOOLD): $(call obj,$(POOLD_SRC))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIBIOD): $(call obj,$(IOD_SRC))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(LIBNETD): $(call obj,$(NETD_SRC))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# quiver-guest is built in two stages: the first, without an embedded
# filter, compiles the policy table to BPF (libseccomp, then made smaller by
# guest/trap_bpf.c) and writes it as C;
# the second links that program in, so no sandbox start pays for libseccomp's
# compiler (see guest/trap_seccomp.c).  It is exec'd for every sandbox, so
# it is linked static-pie: no dynamic loader (~1 ms less per start here) but
# still ASLR, since the supervisor is long-lived and reads hostile input.  It
# uses nothing of glibc that needs NSS or dlopen.
ifeq ($(SAN),1)
GUEST_LINK = $(CC) $(LDFLAGS) -o $@ $^ $(LIB_GUEST) $(LIB_MSGPACK)
else
GUEST_LINK = $(CC) $(LDFLAGS) -static-pie -o $@ $^ -lseccomp -ljansson -lcap -lmsgpackc
endif
$(BUILD)/stage1/quiver-guest: $(call obj,guest/main.c) $(LIBGUEST) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(GUEST_LINK)
$(BUILD)/gen/policy_bpf.c: $(BUILD)/stage1/quiver-guest
	@mkdir -p $(dir $@)
	$< policy --format bpf-c > $@.tmp && mv $@.tmp $@
$(BUILD)/obj/gen/policy_bpf.o: $(BUILD)/gen/policy_bpf.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@
$(BIN)/quiver-guest: $(call obj,guest/main.c) $(BUILD)/obj/gen/policy_bpf.o $(LIBGUEST) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(GUEST_LINK)

$(BIN)/quiver-vmmd: $(call obj,$(VMMD_SRC)) $(LIBGUEST) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIB_UV) $(LIB_GUEST) $(LIB_MSGPACK) $(LIB_NNG) $(LIB_SYSTEMD) -lpthread

$(BIN)/quiver-poold: $(call obj,services/poold/main.c) $(LIBPOOLD) $(LIBGUEST) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIB_UV) $(LIB_GUEST) $(LIB_MSGPACK) $(LIB_NNG) $(LIB_SYSTEMD) -lpthread

$(BIN)/quiver-iod: $(call obj,services/iod/main.c) $(LIBIOD) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -luring $(LIB_MSGPACK) $(LIB_NNG) $(LIB_SYSTEMD) -lpthread

$(BIN)/quiver-netd: $(call obj,$(NETD_DAEMON_SRC)) $(LIBNETD) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIB_UV) $(LIB_NET) $(LIB_RDMA) $(LIB_MSGPACK) $(LIB_NNG) $(LIB_SYSTEMD) -lpthread

$(BIN)/qctl: $(call obj,$(QCTL_SRC)) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIB_MSGPACK) $(STATIC_ON) -ljansson $(STATIC_OFF) -lpthread

$(BUILD)/bench/loadgen: $(call obj,bench/loadgen.c) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIB_MSGPACK) $(LIB_NNG) -lpthread

$(BUILD)/bench/netd_transport: $(call obj,bench/netd_transport.c) $(LIBNETD) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIB_RDMA)

# Unit tests link libcommon; test_guest_*.c link libguest as well,
# test_poold_X.c services/poold/X.c (one module) and libguest,
# test_netd_*.c libnetd.
$(BUILD)/tests/test_netd_%: $(call obj,tests/unit/test_netd_%.c) $(LIBNETD) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIB_CMOCKA) $(LIB_UV) $(LIB_NET) $(LIB_RDMA) $(LIB_MSGPACK) $(LIB_NNG) $(STATIC_ON) -ljansson $(STATIC_OFF) -lpthread
$(BUILD)/tests/test_poold_%: $(BUILD)/obj/tests/unit/test_poold_%.o $(BUILD)/obj/services/poold/%.o $(LIBGUEST) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIB_CMOCKA) $(LIB_UV) $(LIB_GUEST) $(LIB_MSGPACK) $(LIB_NNG) -lpthread
$(BUILD)/tests/test_guest_%: $(call obj,tests/unit/test_guest_%.c) $(LIBGUEST) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIB_CMOCKA) $(LIB_GUEST) $(LIB_MSGPACK) $(LIB_NNG) -lpthread
$(BUILD)/tests/%: $(call obj,tests/unit/%.c) $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIB_CMOCKA) $(LIB_UV) $(LIB_MSGPACK) $(LIB_NNG) $(STATIC_ON) -ljansson $(STATIC_OFF) -lpthread

# Fuzz targets: clang + libFuzzer + ASan/UBSan, built from the sources directly.
FUZZ_CFLAGS := -g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -DQUIVER_FUZZING -I.
# fuzz_guest_*.c also get the guest sources, like the unit tests.
$(BUILD)/fuzz/fuzz_guest_%: tests/fuzz/fuzz_guest_%.c $(COMMON_SRC) $(GUEST_SRC)
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -o $@ $< $(COMMON_SRC) $(GUEST_SRC) -lseccomp -ljansson -lcap -luv -lmsgpackc -lnng -lsystemd -lpthread
# fuzz_iod_*.c get iod's sources but main.c (the target defines `iod` and
# sbx_maybe_free) and liburing.
$(BUILD)/fuzz/fuzz_iod_%: tests/fuzz/fuzz_iod_%.c $(COMMON_SRC) $(IOD_SRC)
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -o $@ $< $(COMMON_SRC) $(IOD_SRC) -luring -luv -lmsgpackc -lnng -lsystemd -lpthread
# fuzz_netd_*.c get netd's library sources (main.c aside).
$(BUILD)/fuzz/fuzz_netd_%: tests/fuzz/fuzz_netd_%.c $(COMMON_SRC) $(NETD_SRC)
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -o $@ $< $(COMMON_SRC) $(NETD_SRC) $(LIB_NET) $(LIB_RDMA) -luv -lmsgpackc -lnng -lsystemd -ljansson -lpthread
$(BUILD)/fuzz/%: tests/fuzz/%.c $(COMMON_SRC)
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -o $@ $< $(COMMON_SRC) -luv -lmsgpackc -lnng -lsystemd -lpthread

fuzz: $(FUZZ_BINS)

# A short run of every fuzz target over its checked-in seeds; `make fuzz
# FUZZ_SECONDS=600` for a real campaign.
FUZZ_SECONDS ?= 20
fuzz-smoke: $(FUZZ_BINS)
	@set -e; for f in $(FUZZ_BINS); do \
		name=$$(basename $$f); seeds=tests/fuzz/seeds/$${name#fuzz_}; \
		work=$$(mktemp -d); scratch=$$(mktemp -d); \
		[ -d "$$seeds" ] && cp -r "$$seeds"/. "$$work"/ || true; \
		echo "fuzz: $$name for $(FUZZ_SECONDS)s"; \
		TMPDIR="$$scratch" $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 "$$work" \
			>$(BUILD)/fuzz/$$name.log 2>&1 \
			|| { tail -40 $(BUILD)/fuzz/$$name.log; rm -rf "$$work" "$$scratch"; exit 1; }; \
		rm -rf "$$work" "$$scratch"; \
	done

unit-test: $(UNIT_BINS)
	@set -e; pass=0; for t in $(UNIT_BINS); do echo "== $$t"; $$t; pass=$$((pass+1)); done; \
		echo "unit: $$pass test programs passed ($(BUILD))"

system-test: $(PROGRAMS) $(MAN)
	QUIVER_BIN=$(abspath $(BIN)) $(PYTHON) -m pytest -q -p no:cacheprovider tests/system

# The full suite: plain build, the sanitized unit tests, fuzz smoke, format
# check, then the system tests against the real binaries: plain, again with
# a poold on the session's root (every `run` that fits starts from a warm
# supervisor: the attacks and lifecycle tests cover that path too), and
# sanitized.  The sanitized system run keeps ASan and UBSan but not LSan:
# LSan stops the world with ptrace at exit, which the syscall policy denies
# inside a sandbox (and a leak report would replace the workload's exit
# status); leaks are checked by the sanitized unit tests.
test: deps
	$(MAKE) all
	$(MAKE) fmt-check
	$(MAKE) unit-test
	$(MAKE) SAN=1 unit-test
	$(MAKE) fuzz-smoke
	$(MAKE) system-test
	QUIVER_TEST_POOLD=1 $(MAKE) system-test
	ASAN_OPTIONS=detect_leaks=0 $(MAKE) SAN=1 system-test

demo: deps all
	QUIVER_BIN=$(abspath $(BIN)) ./scripts/demo.sh

# Everything the build, the tests and the demo need, from Debian.  Idempotent:
# apt-get runs (and updates its lists once) only when something is missing.
# prometheus (and its promtool) is for tests/system/test_prometheus.py, which
# runs its own on a free port: a prometheus.service the package may start
# under systemd (on :9090) is left alone.
DEPS_PKGS := build-essential pkg-config clang clang-format libclang-rt-14-dev \
	libnng-dev libmsgpack-dev libuv1-dev liburing-dev libcgroup-dev libseccomp-dev \
	libjansson-dev libcmocka-dev libsystemd-dev libcap-dev \
	python3 python3-pytest busybox-static runc crun iproute2 procps util-linux \
	xfsprogs fio groff-base man-db prometheus containerd podman conmon netavark iptables \
	gnuplot-nox libmnl-dev libnftables-dev nftables redis-tools \
	libibverbs-dev librdmacm-dev
deps:
	@missing=""; for p in $(DEPS_PKGS); do \
		dpkg-query -W -f='$${db:Status-Abbrev}' $$p 2>/dev/null | grep -q '^ii' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "deps: need root to install:$$missing" >&2; exit 1; fi; \
		echo "deps: installing$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "deps: all $(words $(DEPS_PKGS)) packages present"; fi

FMT_SRC = $(shell git ls-files '*.c' '*.h' 2>/dev/null) $(shell git ls-files -o --exclude-standard '*.c' '*.h' 2>/dev/null)
fmt:
	clang-format -i $(FMT_SRC)
fmt-check:
	@clang-format --dry-run -Werror $(FMT_SRC) && echo "fmt-check: $(words $(FMT_SRC)) files formatted"

# The installed layout: every program in LIBEXECDIR, where each finds the
# others next to itself (daemon_sibling: qctl execs quiver-vmmd and
# quiver-guest, the daemons quiver-guest), and qctl on the PATH through a
# relative symlink (/proc/self/exe names the real file).  The units get
# the real paths; systemd reads units from $(PREFIX)/lib/systemd/system for
# PREFIX /usr and /usr/local alike.
BINDIR     ?= $(PREFIX)/bin
LIBEXECDIR ?= $(PREFIX)/libexec/quiver
UNITDIR    ?= $(PREFIX)/lib/systemd/system
DOCDIR     ?= $(PREFIX)/share/doc/quiver
MANDIR     ?= $(PREFIX)/share/man
UNITS_IN   := $(wildcard systemd/*.in)
DOCS       := README.md $(wildcard docs/*.md)
install: $(PROGRAMS) $(MAN)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR) \
		$(DESTDIR)$(MANDIR)/man1
	install -m 0755 $(PROGRAMS) $(DESTDIR)$(LIBEXECDIR)/
	ln -sfr $(DESTDIR)$(LIBEXECDIR)/qctl $(DESTDIR)$(BINDIR)/qctl
	@set -e; for u in $(UNITS_IN); do \
		out=$(DESTDIR)$(UNITDIR)/$$(basename $$u .in); \
		echo "install $$u -> $$out"; \
		sed -e 's|@LIBEXECDIR@|$(LIBEXECDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g' $$u > $$out.tmp; \
		chmod 0644 $$out.tmp; mv $$out.tmp $$out; \
	done
	install -m 0644 $(DOCS) $(DESTDIR)$(DOCDIR)/
	install -m 0644 systemd/README.md $(DESTDIR)$(DOCDIR)/systemd.md
	install -m 0644 $(MAN) $(DESTDIR)$(MANDIR)/man1/qctl.1

clean:
	rm -rf build build-san

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
