/*
 * tests/fuzz/fuzz_raft.c — libFuzzer target for the consensus core
 * (replication/raft.h) driven by fuzzed schedules: the deterministic
 * simulator of tests/sim/sim.c (the real core, an in-memory disk and a
 * network that drops, duplicates and reorders; crashes, partitions,
 * proposals, transfers) with every choice's low byte taken from the input
 * while it lasts. The first byte picks 3 or 5 voters. The simulator's
 * invariants (one leader per epoch, log matching, leader completeness,
 * state-machine safety, no acknowledged proposal lost after healing) are
 * checked after every step: a violation aborts with the reason.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int sim_main(int argc, char **argv);
#define main sim_main
#include "tests/sim/sim.c"
#undef main

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	char why[512];
	uint64_t acks, seed = 1469598103934665603ull;
	for (size_t i = 0; i < size; i++)
		seed = (seed ^ data[i]) * 1099511628211ull;
	if (!sim_run_input(seed, data[0] & 1 ? 5 : 3, 600, false, data + 1, size - 1, why,
	                   sizeof why, &acks)) {
		fprintf(stderr, "fuzz_raft: %s\n", why);
		abort();
	}
	return 0;
}
