/*
 * config.h - a VM's configuration: plain data, no fds, no pointers into other
 * objects. It is what a checkpoint stores so that a restore needs nothing
 * else, so every field is serialisable (config_encode/config_decode).
 */
#ifndef RW_VMM_CONFIG_H
#define RW_VMM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

#define RW_MAX_CPUS 64
#define RW_PATH_MAX 4096

enum vm_entry { VM_ENTRY_KERNEL = 0, VM_ENTRY_USER = 1 };

#define RW_MAX_DISKS 8
#define RW_DISK_ID_MAX 48

enum disk_engine { DISK_ENGINE_URING = 0, DISK_ENGINE_SYNC = 1 };

/* One --disk PATH[,id=NAME][,ro][,engine=uring|sync]. */
struct vm_disk_config {
	char path[RW_PATH_MAX];   /* backing file: never written */
	char id[RW_DISK_ID_MAX];  /* instance id; "" = from the MMIO address */
	bool ro;
	enum disk_engine engine;
};

struct vm_config {
	uint64_t mem_size;        /* bytes */
	unsigned ncpus;           /* 1..RW_MAX_CPUS */
	enum vm_entry entry;
	char kernel[RW_PATH_MAX]; /* guest image path */
	char args[4096];          /* string handed to the guest program */
	char serial_out[RW_PATH_MAX]; /* "" = stdout, else a file path */
	bool serial_in;           /* feed stdin to the UART */
	unsigned ndisks;
	struct vm_disk_config disks[RW_MAX_DISKS];
	/*
	 * Host options, not part of what the guest sees (a checkpoint's
	 * configuration does not need them to restore):
	 */
	uint32_t dirty_ring_entries; /* per vCPU; 0 = no dirty ring */
};

/* Defaults: 64 MiB, 1 vCPU, kernel entry, console on stdout, stdin on. */
void config_init(struct vm_config *cfg);

#endif
