#include "kvm.h"

#include <asm/prctl.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#ifndef ARCH_REQ_XCOMP_GUEST_PERM
#define ARCH_REQ_XCOMP_GUEST_PERM 0x1025
#endif
#define XFEATURE_XTILEDATA 18

/* Capabilities rewind cannot work without, and what each is for. */
static const struct {
	int cap;
	const char *name;
	const char *why;
} required_caps[] = {
	{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY", "guest RAM from a memfd" },
	{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP", "in-kernel PIC, IOAPIC and LAPIC" },
	{ KVM_CAP_PIT2, "KVM_CAP_PIT2", "in-kernel PIT" },
	{ KVM_CAP_PIT_STATE2, "KVM_CAP_PIT_STATE2", "saving the PIT" },
	{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT", "the pause barrier" },
	{ KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID", "setting the guest CPUID" },
	{ KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR", "x86 VM setup" },
	{ KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE", "starting and saving vCPUs" },
	{ KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS", "saving pending events" },
	{ KVM_CAP_XCRS, "KVM_CAP_XCRS", "saving XCR0" },
	{ KVM_CAP_DEBUGREGS, "KVM_CAP_DEBUGREGS", "saving debug registers" },
	{ KVM_CAP_ADJUST_CLOCK, "KVM_CAP_ADJUST_CLOCK", "saving the KVM clock" },
	{ KVM_CAP_GET_TSC_KHZ, "KVM_CAP_GET_TSC_KHZ", "the guest TSC frequency" },
};

/*
 * AMX state is dynamic: KVM only reports and accepts it once the process
 * asked for guest permission. Ask; where the host has no AMX the request
 * fails and the supported CPUID simply does not offer it.
 */
static void request_amx_permission(void)
{
	if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_GUEST_PERM, XFEATURE_XTILEDATA) != 0)
		rw_debug("AMX guest permission not granted (%s): AMX hidden from guests",
			 strerror(errno));
}

static int get_supported_cpuid(int fd, struct kvm_cpuid2 **out)
{
	unsigned nent = 64;

	for (;;) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));

		if (!c)
			return -ENOMEM;
		c->nent = nent;
		if (ioctl(fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			*out = c;
			return 0;
		}
		int err = -errno;
		free(c);
		if (err != -E2BIG || nent >= 4096)
			return err;
		nent *= 2;
	}
}

/*
 * Hide AMX when its tile data cannot be saved: without XTILEDATA in the
 * supported XCR0 (leaf 0xD) the AMX feature bits would promise state that
 * KVM_GET_XSAVE2 cannot capture.
 */
static void cpuid_fixup_amx(struct kvm_cpuid2 *c)
{
	bool tiledata = false;

	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function == 0xd && e->index == 0 && (e->eax & (1u << XFEATURE_XTILEDATA)))
			tiledata = true;
	}
	if (tiledata)
		return;
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function == 7 && e->index == 0)
			e->edx &= ~((1u << 22) | (1u << 24) | (1u << 25)); /* AMX-BF16/TILE/INT8 */
		if (e->function == 7 && e->index == 1)
			e->eax &= ~(1u << 21); /* AMX-FP16 */
		if (e->function == 0xd && e->index == 0)
			e->eax &= ~((1u << 17) | (1u << 18)); /* XTILECFG, XTILEDATA */
		if (e->function == 0x1d || e->function == 0x1e)
			e->eax = e->ebx = e->ecx = e->edx = 0;
	}
}

/*
 * Can this host deliver an interrupt into a running guest with no VM exit?
 * Intel APICv and AMD AVIC can; the module parameters say whether they are
 * on. A host running neither module (PVM, for one) has no such path. When
 * a parameter exists but cannot be read, assume it is on.
 */
static bool param_on(const char *path, bool *present)
{
	char buf[8] = "";
	FILE *f = fopen(path, "r");

	if (!f) {
		if (errno != ENOENT) {
			*present = true;
			return true;
		}
		return false;
	}
	*present = true;
	bool ok = fgets(buf, sizeof(buf), f) != NULL;
	fclose(f);
	return !ok || buf[0] == 'Y' || buf[0] == 'y' || buf[0] == '1';
}

static bool host_has_apic_virt(void)
{
	bool present = false;
	bool on = param_on("/sys/module/kvm_intel/parameters/enable_apicv", &present) |
		  param_on("/sys/module/kvm_amd/parameters/avic", &present);

	if (on)
		return true;
	/* neither parameter file: either neither module or a kernel without them */
	return !present && (access("/sys/module/kvm_intel", F_OK) == 0 ||
			    access("/sys/module/kvm_amd", F_OK) == 0);
}

/* Say why the KVM device does not open, and what would fix it. */
static void explain_open_failure(const char *dev, int err)
{
	switch (err) {
	case ENOENT:
	case ENODEV:
	case ENXIO:
		rw_error("%s does not exist: this host offers no KVM. Load kvm_intel or kvm_amd "
			 "(with virtualization enabled in the firmware), or run rewind on a host "
			 "or VM that has KVM", dev);
		break;
	case EACCES:
	case EPERM:
		rw_error("cannot open %s: permission denied. Add your user to the group that "
			 "owns it (usually kvm: sudo usermod -aG kvm $USER, then log in again), "
			 "or run rewind as root", dev);
		break;
	default:
		rw_error("cannot open %s: %s", dev, strerror(err));
	}
}

int kvm_host_open(struct kvm_host *kvm)
{
	const char *dev = getenv("REWIND_KVM_DEVICE");
	int ret, v;

	memset(kvm, 0, sizeof(*kvm));
	if (!dev || !*dev)
		dev = "/dev/kvm";
	kvm->fd = open(dev, O_RDWR | O_CLOEXEC);
	if (kvm->fd < 0) {
		explain_open_failure(dev, errno);
		ret = RW_ENOKVM;
		goto fail;
	}
	v = ioctl(kvm->fd, KVM_GET_API_VERSION, 0);
	if (v != KVM_API_VERSION) {
		rw_error("/dev/kvm speaks API version %d, rewind needs %d", v, KVM_API_VERSION);
		ret = RW_ENOKVMCAP;
		goto fail_close;
	}
	for (unsigned i = 0; i < ARRAY_SIZE(required_caps); i++) {
		if (ioctl(kvm->fd, KVM_CHECK_EXTENSION, required_caps[i].cap) <= 0) {
			rw_error("KVM lacks %s (needed for %s)", required_caps[i].name,
				 required_caps[i].why);
			ret = RW_ENOKVMCAP;
			goto fail_close;
		}
	}
	v = ioctl(kvm->fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (v <= 0) {
		ret = v < 0 ? -errno : -EINVAL;
		goto fail_close;
	}
	kvm->run_size = (size_t)v;
	v = ioctl(kvm->fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	kvm->max_vcpus = v > 0 ? (unsigned)v : 1;
	v = ioctl(kvm->fd, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS);
	kvm->sync_regs = v > 0 && (v & KVM_SYNC_X86_REGS);
	kvm->sync_regs_mask = v > 0 ? (uint32_t)v : 0;
	kvm->stats_fd = ioctl(kvm->fd, KVM_CHECK_EXTENSION, KVM_CAP_BINARY_STATS_FD) > 0;
	kvm->apic_virt = host_has_apic_virt();
	v = ioctl(kvm->fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	kvm->xsave_size = v > 0 ? (uint32_t)v : 0;
	v = ioctl(kvm->fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
	kvm->dirty_ring_acq_rel = v > 0;
	if (v <= 0)
		v = ioctl(kvm->fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING);
	kvm->dirty_ring_max = v > 0 ? (uint32_t)v : 0;
	v = ioctl(kvm->fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	kvm->manual_protect = v > 0;

	request_amx_permission();
	ret = get_supported_cpuid(kvm->fd, &kvm->cpuid);
	if (ret) {
		rw_error("KVM_GET_SUPPORTED_CPUID failed: %s", rw_strerror(ret));
		goto fail_close;
	}
	cpuid_fixup_amx(kvm->cpuid);
	return 0;

fail_close:
	close(kvm->fd);
fail:
	kvm->fd = -1;
	return ret;
}

void kvm_host_close(struct kvm_host *kvm)
{
	if (kvm->fd >= 0)
		close(kvm->fd);
	kvm->fd = -1;
	free(kvm->cpuid);
	kvm->cpuid = NULL;
}
