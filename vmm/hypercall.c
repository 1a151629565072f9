#include "hypercall.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "log.h"
#include "rw/abi.h"
#include "util.h"
#include "vcpu.h"
#include "vm.h"

/* Arguments of the hypercall a vCPU is making: RDI, RSI, RDX, RCX. */
static int hc_args(struct vcpu *v, uint64_t args[4])
{
	struct kvm_regs r;
	const struct kvm_regs *rp = &r;

	if (v->vm->kvm.sync_regs) {
		rp = &v->run->s.regs.regs;
	} else {
		int ret = vcpu_get_regs(v, &r);
		if (ret)
			return ret;
	}
	args[0] = rp->rdi;
	args[1] = rp->rsi;
	args[2] = rp->rdx;
	args[3] = rp->rcx;
	return 0;
}

static int64_t hc_host_write(struct vm *vm, const uint64_t *a)
{
	uint64_t gpa = a[0], len = a[1], seed = a[2];
	uint8_t *dst;

	if (len > RW_HC_HOST_WRITE_MAX)
		return -E2BIG;
	dst = mem_gpa_to_hva(&vm->mem, gpa, len);
	if (!dst)
		return -EFAULT;
	for (uint64_t i = 0; i < len; i++)
		dst[i] = rw_host_pattern(seed, i);
	mem_mark_dirty(&vm->mem, gpa, len);
	return 0;
}

static int64_t hc_log(struct vm *vm, struct vcpu *v, const uint64_t *a)
{
	char buf[RW_HC_LOG_MAX + 1];
	uint64_t len = MIN(a[1], (uint64_t)RW_HC_LOG_MAX);

	if (mem_read(&vm->mem, a[0], buf, len))
		return -EFAULT;
	buf[len] = 0;
	for (uint64_t i = 0; i < len; i++)
		if ((unsigned char)buf[i] < 0x20 && buf[i] != '\t')
			buf[i] = '?';
	rw_info("guest (vCPU %u): %s", v->index, buf);
	return 0;
}

static int64_t hc_dispatch(struct vm *vm, struct vcpu *v, unsigned nr, const uint64_t *a)
{
	struct vm_stop_info why = { .vcpu = v->index };

	switch (nr) {
	case RW_HC_VERSION:
		return RW_ABI_VERSION;
	case RW_HC_EXIT:
		why.reason = VM_STOP_EXIT;
		why.exit_code = (int)(a[0] & 0xff);
		snprintf(why.msg, sizeof(why.msg), "guest exited with code %d", why.exit_code);
		vm_request_stop(vm, &why);
		return 0;
	case RW_HC_CRASH:
		why.reason = VM_STOP_CRASH;
		why.vector = a[0];
		why.rip = a[1];
		why.error_code = a[2];
		why.cr2 = a[3];
		snprintf(why.msg, sizeof(why.msg),
			 "guest crashed on vCPU %u: exception vector %llu at RIP 0x%llx "
			 "(error code 0x%llx, CR2 0x%llx)",
			 v->index, (unsigned long long)a[0], (unsigned long long)a[1],
			 (unsigned long long)a[2], (unsigned long long)a[3]);
		vm_request_stop(vm, &why);
		return 0;
	case RW_HC_HOST_WRITE:
		return hc_host_write(vm, a);
	case RW_HC_LOG:
		return hc_log(vm, v, a);
	default:
		return -ENOSYS;
	}
}

static void doorbell_read(void *opaque, struct vcpu *v, uint64_t offset, void *data, uint32_t len)
{
	struct vm *vm = opaque;
	uint64_t args[4];
	unsigned nr = (unsigned)(offset / 8);
	int64_t ret;

	if (len != 8 || offset % 8 || nr >= RW_HC_NR) {
		memset(data, 0xff, len);
		return;
	}
	ret = hc_args(v, args);
	if (ret == 0 && !(vm->hooks.hypercall &&
			  vm->hooks.hypercall(vm->hooks.opaque, v, nr, args, &ret)))
		ret = hc_dispatch(vm, v, nr, args);
	memcpy(data, &ret, 8);
}

/* One-way form: the same call, no result. */
static void doorbell_write(void *opaque, struct vcpu *v, uint64_t offset, const void *data,
			   uint32_t len)
{
	uint64_t ignored;

	(void)data;
	if (len != 8 || offset % 8 || offset / 8 >= RW_HC_NR)
		return;
	doorbell_read(opaque, v, offset, &ignored, 8);
}

static const struct bus_ops doorbell_ops = {
	.read = doorbell_read,
	.write = doorbell_write,
};

int hypercall_init(struct vm *vm)
{
	return bus_register(&vm->buses[BUS_MMIO], RW_GPA_HYPERCALL, RW_PAGE_SIZE, &doorbell_ops, vm,
			    "hypercall");
}
