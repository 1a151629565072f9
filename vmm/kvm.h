/*
 * kvm.h - the /dev/kvm handle and the capabilities rewind relies on.
 */
#ifndef RW_VMM_KVM_H
#define RW_VMM_KVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct kvm_cpuid2;

struct kvm_host {
	int fd;                 /* /dev/kvm */
	size_t run_size;        /* KVM_GET_VCPU_MMAP_SIZE */
	unsigned max_vcpus;
	bool sync_regs;         /* KVM_CAP_SYNC_REGS has KVM_SYNC_X86_REGS */
	uint32_t sync_regs_mask;/* what KVM_CAP_SYNC_REGS offers (KVM_SYNC_X86_*) */
	uint32_t xsave_size;    /* KVM_CAP_XSAVE2 size, 0 if only legacy XSAVE */
	uint32_t dirty_ring_max;/* bytes, 0 if no dirty ring */
	bool dirty_ring_acq_rel;
	bool manual_protect;    /* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 */
	bool stats_fd;          /* KVM_CAP_BINARY_STATS_FD */
	bool apic_virt;         /* the host may deliver interrupts to a guest
				 * without a VM exit (APICv / AVIC posted
				 * interrupts), or it cannot tell */
	uint64_t tsc_khz;       /* guest TSC rate (vm_create fills it), 0 if unknown */
	struct kvm_cpuid2 *cpuid; /* KVM_GET_SUPPORTED_CPUID, adjusted */
};

/*
 * Open /dev/kvm and check every capability rewind needs. On a missing one,
 * logs "KVM lacks KVM_CAP_xxx (what it is for)" and returns RW_ENOKVMCAP.
 * Errors: -ENOENT/-EACCES/-errno opening /dev/kvm, RW_ENOKVMCAP, -ENOMEM.
 */
int kvm_host_open(struct kvm_host *kvm) RW_MUST_CHECK;
void kvm_host_close(struct kvm_host *kvm);

#endif
