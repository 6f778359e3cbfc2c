# strata — one non-recursive Makefile.
#
#   make            build everything under build/
#   make test       build and run every test suite (unit + fuzz corpus replay)
#   make run        build and start stratad on configs/strata.yaml (data in ./data)
#   make run-cluster   three nodes on loopback (configs/cluster/, data in ./data/node1-3)
#   make bench      run the benchmarks (format, store, end-to-end against DuckDB)
#   make asan       ASan+UBSan build in build/asan, then the whole test suite
#   make fuzz       libFuzzer targets for FUZZ_SECONDS each (clang; FUZZ_TARGETS=dispatch for one)
#   make format     clang-format every source file
#   make lint-deps  check the include direction of DESIGN.md §3
#   make install / uninstall   (PREFIX, DESTDIR)
#
# Missing Debian packages are installed by .ci/deps (see README.md).

.DEFAULT_GOAL := all
B        ?= build
PREFIX   ?= /usr/local
DESTDIR  ?=
ROWS     ?= 10000000
VERSION  := $(shell sed -n 's/.*ST_VERSION_STRING "\(.*\)".*/\1/p' daemon/store/strata.h)
FUZZ_SECONDS ?= 60
CC       ?= cc

# Newer msgpack-c releases call the package msgpack-c; Debian 12's is msgpack.
MSGPACK_PKG := $(shell pkg-config --exists msgpack-c 2>/dev/null && echo msgpack-c || echo msgpack)
PKGS := lmdb nanomsg liblz4 $(MSGPACK_PKG) yaml-0.1 libsodium

OPT      ?= -O3
WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-format-truncation
CFLAGS   ?= $(OPT) -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(EXTRA_CFLAGS) -I. -MMD -MP $(PKG_CFLAGS)
LDFLAGS  ?=
ALL_LDFLAGS = $(LDFLAGS) $(EXTRA_CFLAGS)

# Goals that need no libraries do not trigger the dependency step.
NODEPS_GOALS := clean format lint-deps uninstall
ifneq ($(filter-out $(NODEPS_GOALS),$(or $(MAKECMDGOALS),all)),)
include $(B)/deps.mk
endif

$(B)/deps.mk: .ci/deps Makefile
	@mkdir -p $(B)
	@sh .ci/deps
	@{ echo "PKG_CFLAGS := $$(pkg-config --cflags $(PKGS))"; \
	   echo "LZ4_LIBS := $$(pkg-config --libs liblz4)"; \
	   echo "MSGPACK_LIBS := $$(pkg-config --libs $(MSGPACK_PKG))"; \
	   echo "LMDB_LIBS := $$(pkg-config --libs lmdb)"; \
	   echo "NN_LIBS := $$(pkg-config --libs nanomsg)"; \
	   echo "YAML_LIBS := $$(pkg-config --libs yaml-0.1)"; \
	   echo "SODIUM_LIBS := $$(pkg-config --libs libsodium)"; } > $@

# ---- sources ------------------------------------------------------------
# Program entry points are named *_main.c and stay out of the libraries.
# libstrata (DESIGN.md §3): format/ without the wire codec and the transport,
# and daemon/store/. It links LMDB, LZ4 and libsodium only, so an appliance
# that embeds the store links no nanomsg, msgpack-c or libyaml.
WIRE_SRC    := format/wire.c format/transport.c
FORMAT_SRC  := $(filter-out %_main.c $(WIRE_SRC),$(wildcard format/*.c))
STORE_SRC   := $(filter-out %_main.c,$(wildcard daemon/store/*.c))
SERVER_SRC  := $(filter-out %_main.c,$(wildcard daemon/server/*.c))
# Installed headers of libstrata.
STORE_HDRS := daemon/store/strata.h daemon/store/query.h
FORMAT_HDRS := $(filter-out %_int.h format/wire.h format/transport.h,$(wildcard format/*.h))
LIB_OBJ     := $(FORMAT_SRC:%.c=$(B)/%.o) $(STORE_SRC:%.c=$(B)/%.o)
STRATA_LIB  := $(B)/libstrata.a
STORE_LIBS   = $(LMDB_LIBS) $(LZ4_LIBS) $(SODIUM_LIBS) -lpthread -lm
STRATA_LIBS  = $(STRATA_LIB) $(STORE_LIBS)
# The wire protocol: msgpack codec and nanomsg transport, for the client and
# the server.
WIRE_LIB    := $(B)/libstrata-wire.a
WIRE_LIBS    = $(WIRE_LIB) $(MSGPACK_LIBS) $(NN_LIBS)
# stratad's modules (config, log, server) minus main, for stratad and tests.
SERVER_LIB  := $(B)/libstratad.a
SERVER_LIBS  = $(SERVER_LIB) $(REPL_LIB) $(WIRE_LIBS) $(STRATA_LIBS) $(YAML_LIBS)
# libstrata-client: admin/ minus program entry points (wire client, CSV/JSONL
# readers); it speaks the wire protocol and uses only format/.
ADMIN_SRC   := $(filter-out %_main.c,$(wildcard admin/*.c admin/cli/*.c))
CLIENT_LIB  := $(B)/libstrata-client.a
CLIENT_LIBS  = $(CLIENT_LIB) $(WIRE_LIBS) $(STRATA_LIBS)
# The replication core (replication/, format/ headers only): its own library,
# not part of libstrata.
REPL_SRC    := $(wildcard replication/*.c)
REPL_LIB    := $(B)/libstrata-repl.a
# The deterministic simulator of tests/sim/ over the real core, and two
# negative controls: the same simulator over a core built with a known bug.
SIM_SRC     := $(wildcard tests/sim/*.c)
SIM_OBJ     := $(SIM_SRC:%.c=$(B)/simobj/%.o)
SIM_BIN     := $(B)/tests/sim $(B)/tests/sim-bug-vote $(B)/tests/sim-bug-commit
SEEDS       ?= 20000
SIM_CI_SEEDS ?= 2000

UNIT_SRC    := $(wildcard tests/unit/test_*.c)
UNIT_BIN    := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
FUZZ_SRC    := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES  := $(FUZZ_SRC:tests/fuzz/fuzz_%.c=%)
FUZZ_TARGETS ?= $(FUZZ_NAMES)
REPLAY_BIN  := $(FUZZ_NAMES:%=$(B)/tests/replay_%)

PROGS := $(B)/stratad $(B)/strata $(B)/strata-inspect $(B)/bench-format $(B)/bench-store \
	 $(B)/strata-demo $(B)/bench-gencsv $(B)/bench-e2e $(B)/bench-dml $(B)/bench-repl

.SECONDARY:

.PHONY: sim
.PHONY: all install-lib test run run-cluster bench bench-format bench-store bench-e2e bench-dml bench-repl asan tsan fuzz format lint-deps install uninstall clean
INTEG_BIN   := $(B)/tests/wire_abuse
all: $(STRATA_LIB) $(WIRE_LIB) $(SERVER_LIB) $(CLIENT_LIB) $(PROGS) $(B)/strata.pc $(UNIT_BIN) $(REPLAY_BIN) $(INTEG_BIN) $(REPL_LIB) $(SIM_BIN) $(B)/tests/flip

$(B)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(STRATA_LIB): $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(WIRE_LIB): $(WIRE_SRC:%.c=$(B)/%.o)
	@rm -f $@
	$(AR) rcs $@ $^

$(SERVER_LIB): $(SERVER_SRC:%.c=$(B)/%.o)
	@rm -f $@
	$(AR) rcs $@ $^

$(CLIENT_LIB): $(ADMIN_SRC:%.c=$(B)/%.o)
	@rm -f $@
	$(AR) rcs $@ $^

$(REPL_LIB): $(REPL_SRC:%.c=$(B)/%.o)
	@rm -f $@
	$(AR) rcs $@ $^

$(B)/simobj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<
$(B)/bug-vote/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -DRAFT_BUG_VOTE_WITHOUT_UPTODATE -c -o $@ $<
$(B)/bug-commit/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -DRAFT_BUG_COMMIT_OLD_EPOCH -c -o $@ $<
$(B)/tests/sim: $(SIM_OBJ) $(REPL_LIB) $(STRATA_LIB)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $(SIM_OBJ) $(REPL_LIB) $(STRATA_LIBS)
$(B)/tests/sim-bug-vote: $(SIM_OBJ) $(B)/bug-vote/replication/raft.o $(STRATA_LIB)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(STRATA_LIBS)
$(B)/tests/sim-bug-commit: $(SIM_OBJ) $(B)/bug-commit/replication/raft.o $(STRATA_LIB)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(STRATA_LIBS)
$(B)/tests/test_raft: $(B)/tests/unit/test_raft.o $(REPL_LIB) $(STRATA_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(REPL_LIB) $(STRATA_LIBS)
$(B)/tests/test_link: $(B)/tests/unit/test_link.o $(REPL_LIB) $(WIRE_LIB) $(STRATA_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(REPL_LIB) $(WIRE_LIBS) $(STRATA_LIBS)

$(B)/stratad: $(B)/daemon/server/stratad_main.o $(SERVER_LIB) $(REPL_LIB) $(WIRE_LIB) $(STRATA_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(SERVER_LIBS)
$(B)/strata: $(B)/admin/strata_main.o $(CLIENT_LIB) $(WIRE_LIB) $(STRATA_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(CLIENT_LIBS)
$(B)/bench-gencsv: $(B)/tests/bench/gencsv_main.o $(B)/tests/bench/table.o $(STRATA_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(STRATA_LIBS)
$(B)/bench-e2e: $(B)/tests/bench/e2e_main.o $(B)/tests/bench/harness.o $(CLIENT_LIB) $(WIRE_LIB) $(STRATA_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(CLIENT_LIBS)
$(B)/bench-dml: $(B)/tests/bench/dml_main.o $(B)/tests/bench/harness.o $(CLIENT_LIB) $(WIRE_LIB) $(STRATA_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(CLIENT_LIBS)
$(B)/bench-repl: $(B)/tests/bench/repl_main.o $(B)/tests/bench/table.o $(CLIENT_LIB) $(WIRE_LIB) $(STRATA_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(CLIENT_LIBS) -lpthread
$(B)/strata-inspect: $(B)/admin/inspect_main.o $(STRATA_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(STRATA_LIBS)
$(B)/strata-demo: $(B)/tests/bench/demo_main.o $(B)/tests/bench/table.o $(STRATA_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(STRATA_LIBS)
$(B)/bench-format: $(B)/tests/bench/bench_format.o $(B)/tests/bench/table.o $(STRATA_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(STRATA_LIBS)

$(B)/bench-store: $(B)/tests/bench/bench_store.o $(B)/tests/bench/table.o $(STRATA_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(STRATA_LIBS)

$(B)/tests/test_%: $(B)/tests/unit/test_%.o $(B)/tests/bench/table.o $(SERVER_LIB) $(REPL_LIB) $(CLIENT_LIB) $(WIRE_LIB) $(STRATA_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(SERVER_LIB) $(REPL_LIB) $(CLIENT_LIBS) $(YAML_LIBS)

$(B)/tests/flip: $(B)/tests/fault/flip.o $(STRATA_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(STRATA_LIBS)

$(B)/tests/wire_abuse: $(B)/tests/integration/wire_abuse.o $(CLIENT_LIB) $(WIRE_LIB) $(STRATA_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(CLIENT_LIBS)

# Fuzz targets built with the normal compiler replay their committed corpus.
# Like the fuzzers, they link a copy of format/ built in fuzzing mode (CRC
# mismatches ignored, FORMAT.md checks only), so the corpus exercises the
# parsers and decoders on hostile bytes rather than stopping at a checksum.
FUZZMODE_OBJ := $(FORMAT_SRC:%.c=$(B)/fuzzmode/%.o) $(WIRE_SRC:%.c=$(B)/fuzzmode/%.o)
$(B)/fuzzmode/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -c -o $@ $<
$(B)/tests/replay_%: $(B)/tests/fuzz/fuzz_%.o $(B)/tests/fuzz/replay.o $(FUZZMODE_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(LZ4_LIBS) $(MSGPACK_LIBS) $(NN_LIBS) $(SODIUM_LIBS) -lm
# fuzz_dispatch drives stratad's request path (sd_handle) against a real
# store: its replay links the server, wire and store libraries as built.
# fuzz_entry checks entry bodies with the store's own parser.
$(B)/tests/replay_entry: $(B)/tests/fuzz/fuzz_entry.o $(B)/tests/fuzz/replay.o $(STRATA_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(STRATA_LIBS)
# fuzz_link decodes replication messages with the link's own codec.
$(B)/tests/replay_link: $(B)/tests/fuzz/fuzz_link.o $(B)/tests/fuzz/replay.o $(REPL_LIB) $(FUZZMODE_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(REPL_LIB) $(LZ4_LIBS) $(MSGPACK_LIBS) $(NN_LIBS) $(SODIUM_LIBS) -lm -lpthread
# fuzz_raft drives the real core through the simulator (tests/sim/sim.c).
$(B)/tests/replay_raft: $(B)/tests/fuzz/fuzz_raft.o $(B)/tests/fuzz/replay.o $(REPL_LIB) $(FUZZMODE_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(REPL_LIB) $(LZ4_LIBS) $(MSGPACK_LIBS) $(NN_LIBS) $(SODIUM_LIBS) -lm -lpthread
$(B)/tests/replay_dispatch: $(B)/tests/fuzz/fuzz_dispatch.o $(B)/tests/fuzz/replay.o $(SERVER_LIB) $(REPL_LIB) $(WIRE_LIB) $(STRATA_LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(SERVER_LIBS) -lpthread

# ---- goals --------------------------------------------------------------
TEST_CMDS = $(UNIT_BIN) $(foreach f,$(FUZZ_NAMES),"$(B)/tests/replay_$(f) tests/fuzz/corpus/$(f)") \
	    "sh tests/integration/cli.sh $(B)" "sh tests/integration/dml.sh $(B)" \
	    "python3 tests/dml/oracle.py $(B)" \
	    "sh tests/integration/cluster.sh $(B)" \
	    "sh tests/integration/partition.sh $(B)" "sh tests/integration/twonode.sh $(B)" \
	    "sh tests/fault/cutfs_test.sh $(B)/tests/cutfs" \
	    "sh tests/fault/fault.sh $(B) --short" \
	    "$(B)/tests/sim --seeds $(SIM_CI_SEEDS)" \
	    "$(B)/tests/sim-bug-vote --expect-violation --seeds $(SIM_CI_SEEDS)" \
	    "$(B)/tests/sim-bug-commit --expect-violation --seeds $(SIM_CI_SEEDS)" \
	    "$(B)/tests/flip --flips $(FLIP_CI_FLIPS) --seed $(FLIP_CI_SEED)" \
	    "$(B)/tests/flip --control --flips $(FLIP_CI_CONTROL) --seed $(FLIP_CI_SEED)"

# The README's libstrata example must compile against an installed libstrata
# with `cc app.c $(pkg-config --cflags --libs strata)` (installed under
# $(B)/pkgtest), and the pkg-config file must name no wire library.
$(B)/readme_example: README.md $(STRATA_LIB) $(B)/strata.pc $(STORE_HDRS) $(FORMAT_HDRS)
	@awk '/^```c$$/{on=1;next} /^```$$/{on=0} on' README.md > $(B)/readme_example.c
	@rm -rf $(B)/pkgtest
	@$(MAKE) --no-print-directory install-lib DESTDIR=$(CURDIR)/$(B)/pkgtest >/dev/null
	@export PKG_CONFIG_PATH=$(CURDIR)/$(B)/pkgtest$(PREFIX)/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$(CURDIR)/$(B)/pkgtest; \
	 libs=$$(pkg-config --libs strata) || exit 1; \
	 case "$$libs" in *nanomsg*|*msgpack*|*yaml*) echo "strata.pc names a wire library: $$libs"; exit 1;; esac; \
	 echo "cc readme_example.c $$(pkg-config --cflags --libs strata)"; \
	 $(CC) $(EXTRA_CFLAGS) -o $@ $(B)/readme_example.c $$(pkg-config --cflags --libs strata)

test: all $(B)/readme_example
	@sh tests/run.sh $(TEST_CMDS) "sh tests/readme_example.sh $(B)"

# The bit-flip campaign (tests/fault/flip.c): make flip-long FLIPS=N, and
# its negative control (record checksums and cross-checks off). make test's
# short runs use a fixed seed (the same trials every run); the long ones a
# new seed each run unless SEED=S is given. No silent flip, crash or hang is
# ever allowed.
FLIP_CI_FLIPS ?= 300
FLIP_CI_CONTROL ?= 1500
FLIP_CI_SEED ?= 1
FLIPS ?= 5000
FLIP_SEED = $(if $(SEED),--seed $(SEED))
flip-long: $(B)/tests/flip
	$(B)/tests/flip --flips $(FLIPS) $(FLIP_SEED)
flip-control: $(B)/tests/flip
	$(B)/tests/flip --control --flips $(FLIPS) $(FLIP_SEED)

# More seeds of the simulator than make test runs: make sim SEEDS=N.
sim: $(B)/tests/sim
	$(B)/tests/sim --seeds $(SEEDS)

run: all
	$(B)/stratad -c configs/strata.yaml

# Three nodes on loopback (configs/cluster/), in the foreground: Ctrl-C
# reaches all three (one process group) and each stops cleanly.
run-cluster: all
	@mkdir -p data
	@echo "starting nodes 1-3 (clients on tcp://127.0.0.1:7421-7423); Ctrl-C stops them all"
	@for i in 1 2 3; do $(B)/stratad -c configs/cluster/node$$i.yaml & done; wait

bench: bench-format bench-store bench-e2e bench-dml bench-repl
bench-format: $(B)/bench-format
	$(B)/bench-format --rows $(ROWS)
bench-store: $(B)/bench-store
	$(B)/bench-store --rows $(ROWS)
# DuckDB for the comparison: the pinned @duckdb/node-api of
# tests/bench/e2e/package-lock.json, installed into build/e2e (ignored).
# Without npm access bench-e2e prints strata's figures alone.
E2E_DIR := $(B)/e2e
$(E2E_DIR)/.installed: tests/bench/e2e/package.json tests/bench/e2e/package-lock.json
	@mkdir -p $(E2E_DIR)
	@cp tests/bench/e2e/package.json tests/bench/e2e/package-lock.json $(E2E_DIR)/
	@if (cd $(E2E_DIR) && npm ci --no-audit --no-fund --loglevel=error); then touch $@; \
	 else echo "bench-e2e: npm could not install @duckdb/node-api; DuckDB is left out"; fi
bench-e2e: $(B)/bench-e2e $(B)/bench-gencsv $(B)/stratad $(B)/strata
	@-$(MAKE) --no-print-directory $(E2E_DIR)/.installed
	@cp tests/bench/e2e/duckdb_bench.mjs $(E2E_DIR)/
	$(B)/bench-e2e --rows $(ROWS) --bin $(B) --node-dir $(E2E_DIR) --dir $(E2E_DIR)/run

# DELETE / UPDATE / MERGE against DuckDB on the bench table (JSON lines).
bench-dml: $(B)/bench-dml $(B)/bench-gencsv $(B)/stratad $(B)/strata
	@-$(MAKE) --no-print-directory $(E2E_DIR)/.installed
	@cp tests/bench/e2e/duckdb_dml.mjs $(E2E_DIR)/
	$(B)/bench-dml --rows $(ROWS) --bin $(B) --node-dir $(E2E_DIR) --dir $(E2E_DIR)/dml

# A 3-node cluster on loopback ports 27421-27423 and 27500-27556.
FAILOVERS ?= 20
bench-repl: $(B)/bench-repl $(B)/stratad
	$(B)/bench-repl --rows $(ROWS) --failovers $(FAILOVERS) --stratad $(B)/stratad

asan:
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	$(MAKE) --no-print-directory B=build/asan OPT=-O1 \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" test

# ThreadSanitizer over the runners whose code runs on several threads
# (group commit, shared metadata, the segment writer's helper thread and
# per-thread spare writers).
TSAN_TESTS = test_store test_segment test_repl test_link
tsan:
	@$(MAKE) --no-print-directory B=build/tsan OPT=-O1 \
	  EXTRA_CFLAGS="-fsanitize=thread -fno-omit-frame-pointer" $(TSAN_TESTS:%=build/tsan/tests/%)
	@TSAN_OPTIONS=halt_on_error=1 sh tests/run.sh $(TSAN_TESTS:%=build/tsan/tests/%)

FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -O1 -g -I. -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
# fuzz_dispatch also compiles the store and the server (sd_handle).
FUZZ_DISPATCH_EXTRA = $(STORE_SRC) $(SERVER_SRC) $(REPL_SRC) $(LMDB_LIBS) $(SODIUM_LIBS) $(YAML_LIBS) -lpthread
FUZZ_ENTRY_EXTRA = $(STORE_SRC) $(LMDB_LIBS) $(SODIUM_LIBS) -lpthread
fuzz: $(B)/deps.mk
	@sh .ci/deps --fuzz
	@mkdir -p $(B)/fuzz
	@set -e; for f in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$f for $(FUZZ_SECONDS)s"; \
	  extra=; [ $$f = dispatch ] && extra="$(FUZZ_DISPATCH_EXTRA)"; \
	  [ $$f = entry ] && extra="$(FUZZ_ENTRY_EXTRA)"; \
	  [ $$f = link ] && extra="$(REPL_SRC) $(SODIUM_LIBS) -lpthread"; \
	  [ $$f = raft ] && extra="replication/raft.c"; \
	  clang $(FUZZ_CFLAGS) $(PKG_CFLAGS) -o $(B)/fuzz/$$f tests/fuzz/fuzz_$$f.c $(FORMAT_SRC) $(WIRE_SRC) $$extra $(LZ4_LIBS) $(MSGPACK_LIBS) $(NN_LIBS) -lm; \
	  mkdir -p $(B)/fuzz/corpus-$$f; \
	  $(B)/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    $(B)/fuzz/corpus-$$f tests/fuzz/corpus/$$f; \
	done

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

# DESIGN.md §3: format/ uses nothing of ours; daemon/store/ only format/
# (and never the wire codec, the transport or their libraries);
# daemon/server/ the store, format/ and replication/; replication/ only
# format/; admin/ only format/; nothing outside tests/ includes admin/ or tests/.
lint-deps:
	@bad=0; \
	chk() { hits=$$(grep -rnE "#include [\"<]($$2)" $$1 --include='*.[ch]' 2>/dev/null); \
	  if [ -n "$$hits" ]; then echo "lint-deps: $$1 must not include $$2:"; echo "$$hits"; bad=1; fi; }; \
	chk format 'daemon/|replication/|admin/|tests/'; \
	chk daemon/store 'daemon/server/|replication/|admin/|tests/|format/wire\.h|format/transport\.h|msgpack|nanomsg/|yaml\.h'; \
	chk daemon/server 'admin/|tests/'; \
	chk replication 'daemon/|admin/|tests/'; \
	chk admin 'daemon/|replication/|tests/'; \
	for f in $(FORMAT_SRC) $(FORMAT_SRC:.c=.h); do [ -f $$f ] && chk $$f 'format/wire\.h|format/transport\.h|msgpack|nanomsg/|yaml\.h'; done; \
	if [ $$bad = 0 ]; then echo "lint-deps: ok"; fi; exit $$bad

# pkg-config file for appliances that link the store: its Libs name only
# what libstrata needs.
$(B)/strata.pc: Makefile
	@mkdir -p $(@D)
	@printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$${prefix}/lib' 'includedir=$${prefix}/include/strata' '' \
	  'Name: strata' 'Description: strata embedded table store (libstrata)' 'Version: $(VERSION)' \
	  'Cflags: -I$${includedir}' 'Libs: -L$${libdir} -lstrata $(strip $(STORE_LIBS))' > $@

install: all install-lib
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(B)/strata-inspect $(B)/stratad $(B)/strata $(DESTDIR)$(PREFIX)/bin/
# libstrata alone: the library, its headers and strata.pc.
install-lib: $(STRATA_LIB) $(B)/strata.pc
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	  $(DESTDIR)$(PREFIX)/include/strata/format $(DESTDIR)$(PREFIX)/include/strata/daemon/store
	install -m 644 $(STRATA_LIB) $(DESTDIR)$(PREFIX)/lib/libstrata.a
	install -m 644 $(B)/strata.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/strata.pc
	install -m 644 $(FORMAT_HDRS) $(DESTDIR)$(PREFIX)/include/strata/format/
	install -m 644 $(STORE_HDRS) $(DESTDIR)$(PREFIX)/include/strata/daemon/store/

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/strata-inspect $(DESTDIR)$(PREFIX)/bin/stratad \
	  $(DESTDIR)$(PREFIX)/bin/strata $(DESTDIR)$(PREFIX)/lib/libstrata.a \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig/strata.pc
	rm -rf $(DESTDIR)$(PREFIX)/include/strata

clean:
	rm -rf build

include tests/fault/fault.mk

-include $(shell find $(B) -name '*.d' 2>/dev/null)
