# tests/fault/fault.mk — the fault-injection harness (tests/fault/fault.sh,
# tests/fault/README.md), included by the Makefile.
#
#   make fault                 10 runs of each nemesis (a few minutes)
#   make fault-long RUNS=N     N runs of each (default 200); SEED=S to replay
#
# make test runs `sh tests/fault/fault.sh $(B) --short` (TEST_CMDS). The
# power-cut filesystem tests/fault/cutfs.c (FUSE 3) is built into
# $(B)/tests/cutfs; without it the harness skips the power cuts and the
# negative control and says so.
CUTFS_BIN = $(if $(wildcard tests/fault/cutfs.c),$(B)/tests/cutfs)

$(B)/tests/cutfs: tests/fault/cutfs.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra $(EXTRA_CFLAGS) $(shell pkg-config --cflags fuse3) tests/fault/cutfs.c -o $@ $(shell pkg-config --libs fuse3)

# make test's --short run needs cutfs built too.
test: $(CUTFS_BIN)

RUNS ?= 200
FAULT_SEED = $(if $(SEED),--seed $(SEED))
fault: all $(CUTFS_BIN)
	sh tests/fault/fault.sh $(B) $(FAULT_SEED)
fault-long: all $(CUTFS_BIN)
	sh tests/fault/fault.sh $(B) --runs $(RUNS) $(FAULT_SEED)

.PHONY: fault fault-long
