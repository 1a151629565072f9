/*
 * boot.c - load a guest image and put the machine in its entry state.
 *
 * The machine model is rw/abi.h's: an identity-mapped long-mode machine,
 * fixed low pages for boot info, GDT, IDT, TSSs, args and page tables, the
 * ELF image at its physical addresses from RW_GPA_IMAGE_MIN, per-vCPU
 * stacks right after it.
 *
 * The image file is untrusted input: every header field is checked before
 * use, every sum is overflow-checked, and a bad file is rejected with one
 * log line naming the file and the problem. Everything written into guest
 * memory goes through mem_write(), so the dirty tracker sees it, and is
 * encoded field by field in little-endian.
 */
#include "boot.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "log.h"
#include "memory.h"
#include "rw/abi.h"
#include "util.h"
#include "vcpu.h"
#include "vm.h"

#define BOOT_MAX_PHDRS 64
#define BOOT_MAX_NOTES (64 * KiB)   /* bytes of PT_NOTE data we look at */
#define BOOT_COPY_CHUNK (1 * MiB)
#define CPU_STRIDE (RW_KSTACK_SIZE + RW_USTACK_SIZE)

/* Page-table entry bits */
#define PTE_P 0x001ULL
#define PTE_RW 0x002ULL
#define PTE_US 0x004ULL
#define PTE_A 0x020ULL
#define PTE_D 0x040ULL
#define PTE_PS 0x080ULL
/* A and D preset: the CPU never writes a table (no spurious dirty pages). */
#define PTE_TABLE (PTE_P | PTE_RW | PTE_US | PTE_A)
#define PTE_LEAF (PTE_P | PTE_RW | PTE_US | PTE_A | PTE_D)

#define CR0_PE (1ULL << 0)
#define CR0_MP (1ULL << 1)
#define CR0_ET (1ULL << 4)
#define CR0_NE (1ULL << 5)
#define CR0_WP (1ULL << 16)
#define CR0_AM (1ULL << 18)
#define CR0_PG (1ULL << 31)
#define CR4_PAE (1ULL << 5)
#define CR4_PGE (1ULL << 7)
#define CR4_OSFXSR (1ULL << 9)
#define CR4_OSXMMEXCPT (1ULL << 10)
#define CR4_OSXSAVE (1ULL << 18)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)
#define EFER_NXE (1ULL << 11)

/* XCR0 components the guest gets when the host has them. */
#define XCR0_X87 0x1ULL
#define XCR0_SSE 0x2ULL
#define XCR0_AVX 0x4ULL
#define XCR0_AVX512 0xe0ULL /* opmask, ZMM_Hi256, Hi16_ZMM: all or none */

/* State of one load, so that every problem names the file. */
struct loader {
	struct vm *vm;
	const char *path;
	int fd;
	uint64_t size;
	Elf64_Ehdr eh;
	Elf64_Phdr *ph;
	unsigned nph;
	bool has_note;
	uint64_t note_kernel_entry, note_user_entry;
	uint64_t vectors[RW_NR_VECTORS];
	uint64_t vectors_gpa; /* where the loaded note's vectors[] sit, or 0 */
	uint64_t image_start, image_end;
};

static int bad_image(const struct loader *ld, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int bad_image(const struct loader *ld, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rw_error("kernel '%s' is not a guest image rewind can load: %s", ld->path, msg);
	return RW_EBADIMAGE;
}

/* ------------------------------------------------------------ ELF parse */

static int read_exact(struct loader *ld, void *buf, uint64_t len, uint64_t off, const char *what)
{
	int ret = rw_pread_all(ld->fd, buf, len, off);

	if (ret == -EIO)
		return bad_image(ld, "file ends inside the %s", what);
	if (ret) {
		rw_error("kernel '%s': reading the %s: %s", ld->path, what, strerror(-ret));
		return ret;
	}
	return 0;
}

/* [off, off + len) lies inside the file. */
static bool in_file(const struct loader *ld, uint64_t off, uint64_t len)
{
	return off <= ld->size && len <= ld->size - off;
}

static int check_ehdr(struct loader *ld)
{
	const Elf64_Ehdr *e = &ld->eh;

	if (ld->size < EI_NIDENT || memcmp(e->e_ident, ELFMAG, SELFMAG) != 0)
		return bad_image(ld, "not an ELF file");
	if (ld->size < sizeof(*e))
		return bad_image(ld, "file too short for an ELF header (%llu bytes)",
				 (unsigned long long)ld->size);
	if (e->e_ident[EI_CLASS] != ELFCLASS64)
		return bad_image(ld, "not a 64-bit ELF file (ELF class %u)", e->e_ident[EI_CLASS]);
	if (e->e_ident[EI_DATA] != ELFDATA2LSB)
		return bad_image(ld, "not a little-endian ELF file");
	if (e->e_ident[EI_VERSION] != EV_CURRENT || e->e_version != EV_CURRENT)
		return bad_image(ld, "unknown ELF version %u", e->e_ident[EI_VERSION]);
	if (e->e_machine != EM_X86_64)
		return bad_image(ld, "not an x86-64 ELF file (machine %u)", e->e_machine);
	if (e->e_type != ET_EXEC)
		return bad_image(ld, "not a static executable (ELF type %u; rewind needs ET_EXEC)",
				 e->e_type);
	if (e->e_ehsize < sizeof(*e))
		return bad_image(ld, "ELF header size %u too small", e->e_ehsize);
	if (e->e_phentsize != sizeof(Elf64_Phdr))
		return bad_image(ld, "program header size %u, expected %zu", e->e_phentsize,
				 sizeof(Elf64_Phdr));
	if (e->e_phnum == 0)
		return bad_image(ld, "no program headers");
	if (e->e_phnum > BOOT_MAX_PHDRS)
		return bad_image(ld, "%u program headers, at most %u supported", e->e_phnum,
				 BOOT_MAX_PHDRS);
	if (!in_file(ld, e->e_phoff, (uint64_t)e->e_phnum * sizeof(Elf64_Phdr)))
		return bad_image(ld, "program headers at offset 0x%llx lie outside the file",
				 (unsigned long long)e->e_phoff);
	return 0;
}

/* True if [addr, addr + len) lies in the file-backed part of a PT_LOAD. */
static bool in_loaded(const struct loader *ld, uint64_t addr, uint64_t len)
{
	for (unsigned i = 0; i < ld->nph; i++) {
		const Elf64_Phdr *p = &ld->ph[i];

		if (p->p_type == PT_LOAD && addr >= p->p_paddr && len <= p->p_filesz &&
		    addr - p->p_paddr <= p->p_filesz - len)
			return true;
	}
	return false;
}

static int check_load(struct loader *ld, unsigned i)
{
	const Elf64_Phdr *p = &ld->ph[i];
	struct guest_mem *mem = &ld->vm->mem;
	uint64_t end;

	if (p->p_filesz > p->p_memsz)
		return bad_image(ld, "segment %u: file size 0x%llx exceeds memory size 0x%llx", i,
				 (unsigned long long)p->p_filesz, (unsigned long long)p->p_memsz);
	if (!in_file(ld, p->p_offset, p->p_filesz))
		return bad_image(ld, "segment %u: file range 0x%llx+0x%llx lies outside the file", i,
				 (unsigned long long)p->p_offset, (unsigned long long)p->p_filesz);
	if (p->p_memsz == 0)
		return 0;
	if (p->p_vaddr != p->p_paddr)
		return bad_image(ld,
				 "segment %u: virtual address 0x%llx differs from physical 0x%llx "
				 "(rewind identity-maps memory)",
				 i, (unsigned long long)p->p_vaddr, (unsigned long long)p->p_paddr);
	if (p->p_paddr < RW_GPA_IMAGE_MIN)
		return bad_image(ld, "segment %u at 0x%llx lies below 0x%llx, where rewind keeps its tables",
				 i, (unsigned long long)p->p_paddr,
				 (unsigned long long)RW_GPA_IMAGE_MIN);
	if (__builtin_add_overflow(p->p_paddr, p->p_memsz, &end))
		return bad_image(ld, "segment %u: address 0x%llx + size 0x%llx overflows", i,
				 (unsigned long long)p->p_paddr, (unsigned long long)p->p_memsz);
	if (!mem_range_ok(mem, p->p_paddr, p->p_memsz))
		return bad_image(ld,
				 "segment %u [0x%llx, 0x%llx) does not fit in guest RAM "
				 "(%llu MiB; try a larger --mem)",
				 i, (unsigned long long)p->p_paddr, (unsigned long long)end,
				 (unsigned long long)(mem->size >> 20));
	for (unsigned j = 0; j < i; j++) {
		const Elf64_Phdr *q = &ld->ph[j];

		if (q->p_type == PT_LOAD && q->p_memsz &&
		    p->p_paddr < q->p_paddr + q->p_memsz && q->p_paddr < end)
			return bad_image(ld, "segments %u and %u overlap", j, i);
	}
	if (p->p_paddr < ld->image_start)
		ld->image_start = p->p_paddr;
	if (end > ld->image_end)
		ld->image_end = end;
	return 0;
}

/* Decode the rewind note's descriptor (struct rw_image_note, little-endian). */
static int parse_image_note(struct loader *ld, const uint8_t *d, uint32_t len)
{
	const size_t want = sizeof(struct rw_image_note);
	uint32_t magic, abi;

	if (len < want)
		return bad_image(ld, "rewind note is %u bytes, expected %zu", len, want);
	magic = get_le32(d + offsetof(struct rw_image_note, magic));
	abi = get_le32(d + offsetof(struct rw_image_note, abi_version));
	if (magic != RW_IMAGE_MAGIC)
		return bad_image(ld, "rewind note has a bad magic number 0x%08x", magic);
	if (abi != RW_ABI_VERSION)
		return bad_image(ld, "built for guest ABI version %u; this rewind speaks version %u",
				 abi, RW_ABI_VERSION);
	ld->note_kernel_entry = get_le64(d + offsetof(struct rw_image_note, kernel_entry));
	ld->note_user_entry = get_le64(d + offsetof(struct rw_image_note, user_entry));
	for (unsigned v = 0; v < RW_NR_VECTORS; v++)
		ld->vectors[v] = get_le64(d + offsetof(struct rw_image_note, vectors) + 8 * v);
	ld->has_note = true;
	return 0;
}

/* Walk the notes of one PT_NOTE segment, looking for ours. */
static int parse_notes(struct loader *ld, const Elf64_Phdr *p)
{
	uint64_t align = p->p_align == 8 ? 8 : 4;
	uint64_t size = p->p_filesz, off = 0;
	uint8_t *buf;
	int ret;

	if (!in_file(ld, p->p_offset, p->p_filesz))
		return bad_image(ld, "note segment lies outside the file");
	if (size > BOOT_MAX_NOTES)
		return bad_image(ld, "note segment of %llu bytes is too large",
				 (unsigned long long)size);
	buf = malloc(size ? size : 1);
	if (!buf)
		return -ENOMEM;
	ret = read_exact(ld, buf, size, p->p_offset, "notes");
	while (ret == 0 && size - off >= 12) {
		uint32_t namesz = get_le32(buf + off), descsz = get_le32(buf + off + 4);
		uint32_t type = get_le32(buf + off + 8);
		uint64_t name_off = off + 12;
		uint64_t desc_off = name_off + ALIGN_UP((uint64_t)namesz, align);
		uint64_t next = desc_off + ALIGN_UP((uint64_t)descsz, align);

		if (desc_off > size || next > size || desc_off + descsz > size) {
			ret = bad_image(ld, "malformed note at offset %llu of the note segment",
					(unsigned long long)off);
			break;
		}
		if (type == RW_NOTE_TYPE_IMAGE && namesz == sizeof(RW_NOTE_NAME) &&
		    memcmp(buf + name_off, RW_NOTE_NAME, sizeof(RW_NOTE_NAME)) == 0) {
			if (ld->has_note) {
				ret = bad_image(ld, "more than one rewind note");
				break;
			}
			ret = parse_image_note(ld, buf + desc_off, descsz);
			ld->vectors_gpa = p->p_paddr + desc_off +
					  offsetof(struct rw_image_note, vectors);
		}
		off = next;
	}
	free(buf);
	return ret;
}

static int check_entries(struct loader *ld)
{
	if (!ld->has_note) {
		if (!in_loaded(ld, ld->eh.e_entry, 1))
			return bad_image(ld, "entry point 0x%llx is not in a loaded segment",
					 (unsigned long long)ld->eh.e_entry);
		if (ld->vm->cfg.entry == VM_ENTRY_USER)
			return bad_image(ld, "no rewind image note, so it can only start in kernel "
					     "mode (not --entry user)");
		return 0;
	}
	if (!in_loaded(ld, ld->note_kernel_entry, 1))
		return bad_image(ld, "kernel entry 0x%llx is not in a loaded segment",
				 (unsigned long long)ld->note_kernel_entry);
	if (!in_loaded(ld, ld->note_user_entry, 1))
		return bad_image(ld, "user entry 0x%llx is not in a loaded segment",
				 (unsigned long long)ld->note_user_entry);
	for (unsigned v = 0; v < RW_NR_VECTORS; v++)
		if (ld->vectors[v] && !in_loaded(ld, ld->vectors[v], 1))
			return bad_image(ld, "handler of vector %u (0x%llx) is not in a loaded segment",
					 v, (unsigned long long)ld->vectors[v]);
	return 0;
}

static int parse_image(struct loader *ld)
{
	int ret;

	ret = read_exact(ld, &ld->eh, MIN(ld->size, (uint64_t)sizeof(ld->eh)), 0, "ELF header");
	if (ret)
		return ret;
	ret = check_ehdr(ld);
	if (ret)
		return ret;
	ld->nph = ld->eh.e_phnum;
	ld->ph = calloc(ld->nph, sizeof(*ld->ph));
	if (!ld->ph)
		return -ENOMEM;
	ret = read_exact(ld, ld->ph, (uint64_t)ld->nph * sizeof(*ld->ph), ld->eh.e_phoff,
			 "program headers");
	if (ret)
		return ret;

	ld->image_start = UINT64_MAX;
	ld->image_end = 0;
	for (unsigned i = 0; i < ld->nph; i++) {
		switch (ld->ph[i].p_type) {
		case PT_LOAD:
			ret = check_load(ld, i);
			break;
		case PT_NOTE:
			ret = parse_notes(ld, &ld->ph[i]);
			break;
		case PT_INTERP:
		case PT_DYNAMIC:
			ret = bad_image(ld, "dynamically linked (rewind needs a static image)");
			break;
		case PT_TLS:
			ret = bad_image(ld, "has thread-local storage, which guests cannot use");
			break;
		default:
			break;
		}
		if (ret)
			return ret;
	}
	if (ld->image_end == 0)
		return bad_image(ld, "no loadable segment");
	return check_entries(ld);
}

/* -------------------------------------------------------- memory set-up */

static int copy_segments(struct loader *ld)
{
	uint8_t *buf = malloc(BOOT_COPY_CHUNK);
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	for (unsigned i = 0; ret == 0 && i < ld->nph; i++) {
		const Elf64_Phdr *p = &ld->ph[i];

		if (p->p_type != PT_LOAD)
			continue;
		/* The rest up to p_memsz (.bss) is left alone: fresh guest RAM is
		 * zero, and writing it would commit memory for a large .bss. */
		for (uint64_t done = 0; ret == 0 && done < p->p_filesz;) {
			uint64_t n = MIN(p->p_filesz - done, BOOT_COPY_CHUNK);

			ret = read_exact(ld, buf, n, p->p_offset + done, "segment data");
			if (ret == 0)
				ret = mem_write(&ld->vm->mem, p->p_paddr + done, buf, n);
			done += n;
		}
	}
	free(buf);
	return ret;
}

/*
 * Identity-map [0, 4 GiB) and all RAM above it with 2 MiB pages, the first
 * 2 MiB with 4 KiB pages so that page 0 stays unmapped. Layout inside
 * [RW_GPA_PGTABLE, RW_GPA_PGTABLE_END): PML4, PDPT, the 4 KiB table, then
 * one page directory per GiB.
 */
static int write_page_tables(struct vm *vm)
{
	const struct guest_mem *mem = &vm->mem;
	uint64_t top = 4 * GiB, npd, npages, limit;
	uint64_t pml4 = RW_GPA_PGTABLE, pdpt = pml4 + 4096, pt = pdpt + 4096, pd0 = pt + 4096;
	uint8_t *t;
	int ret;

	for (unsigned i = 0; i < mem->nr_slots; i++)
		top = MAX(top, mem->slots[i].gpa + mem->slots[i].size);
	npd = (top + GiB - 1) / GiB;
	npages = 3 + npd;
	if (npd > 512 || npages > (RW_GPA_PGTABLE_END - RW_GPA_PGTABLE) / 4096) {
		rw_error("guest RAM up to 0x%llx needs %llu page-table pages, more than fit at 0x%llx",
			 (unsigned long long)top, (unsigned long long)npages,
			 (unsigned long long)RW_GPA_PGTABLE);
		return RW_ELIMIT;
	}
	t = calloc(npages, 4096);
	if (!t)
		return -ENOMEM;
#define ENTRY(table, idx) (t + ((table) - RW_GPA_PGTABLE) + 8 * (idx))
	put_le64(ENTRY(pml4, 0), pdpt | PTE_TABLE);
	for (uint64_t g = 0; g < npd; g++)
		put_le64(ENTRY(pdpt, g), (pd0 + 4096 * g) | PTE_TABLE);
	for (uint64_t i = 1; i < 512; i++)
		put_le64(ENTRY(pt, i), (i * 4096) | PTE_LEAF);
	/* 2 MiB pages: all of [0, 4 GiB), then RAM above */
	for (uint64_t a = 0; a < top; a += 2 * MiB) {
		uint64_t pd = pd0 + 4096 * (a / GiB), idx = (a % GiB) / (2 * MiB);

		if (a == 0) {
			put_le64(ENTRY(pd, 0), pt | PTE_TABLE);
			continue;
		}
		if (a >= 4 * GiB && !mem_range_ok(mem, a, 2 * MiB))
			continue;
		put_le64(ENTRY(pd, idx), a | PTE_LEAF | PTE_PS);
	}
#undef ENTRY
	limit = npages * 4096;
	ret = mem_write(&vm->mem, RW_GPA_PGTABLE, t, limit);
	free(t);
	return ret;
}

/* The guest's TSC rate in kHz: the host's record, else vCPU 0's; 0 if unknown. */
static uint64_t guest_tsc_khz(const struct vm *vm)
{
	int khz;

	if (vm->kvm.tsc_khz || vm->ncpus == 0)
		return vm->kvm.tsc_khz;
	khz = ioctl(vm->vcpus[0]->fd, KVM_GET_TSC_KHZ, 0);
	return khz > 0 ? (uint64_t)khz : 0;
}

static int write_boot_info(struct vm *vm, const struct boot_image *img, uint32_t args_len)
{
	uint8_t b[4096] = { 0 };
	const struct guest_mem *mem = &vm->mem;

	_Static_assert(sizeof(struct rw_boot_info) <= sizeof(b), "boot info fits its page");
#define F(field) (b + offsetof(struct rw_boot_info, field))
	put_le32(F(magic), RW_BOOT_MAGIC);
	put_le32(F(abi_version), RW_ABI_VERSION);
	put_le32(F(ncpus), vm->cfg.ncpus);
	put_le32(F(flags), vm->cfg.entry == VM_ENTRY_USER ? RW_BOOT_FLAG_USER_ENTRY : 0);
	put_le64(F(mem_size), mem->size);
	put_le64(F(tsc_khz), guest_tsc_khz(vm));
	put_le64(F(image_start), img->image_start);
	put_le64(F(image_end), img->image_end);
	put_le64(F(stacks_base), img->stacks_base);
	put_le64(F(free_start), img->free_start);
	put_le64(F(args_gpa), RW_GPA_ARGS);
	put_le32(F(args_len), args_len);
	put_le32(F(nr_ram), MIN(mem->nr_slots, (unsigned)RW_BOOT_MAX_RAM));
	for (unsigned i = 0; i < mem->nr_slots && i < RW_BOOT_MAX_RAM; i++) {
		put_le64(F(ram) + i * sizeof(struct rw_ram_range) + offsetof(struct rw_ram_range, base),
		      mem->slots[i].gpa);
		put_le64(F(ram) + i * sizeof(struct rw_ram_range) + offsetof(struct rw_ram_range, size),
		      mem->slots[i].size);
	}
	put_le32(F(nr_virtio), MIN(vm->nr_virtio, (unsigned)RW_VIRTIO_MAX));
	for (unsigned i = 0; i < vm->nr_virtio && i < RW_VIRTIO_MAX; i++) {
		uint8_t *o = F(virtio) + i * sizeof(struct rw_virtio_slot);
		put_le64(o + offsetof(struct rw_virtio_slot, base), vm->virtio[i].base);
		put_le32(o + offsetof(struct rw_virtio_slot, irq), vm->virtio[i].irq);
		put_le32(o + offsetof(struct rw_virtio_slot, device_id), vm->virtio[i].device_id);
	}
#undef F
	return mem_write(&vm->mem, RW_GPA_BOOT_INFO, b, sizeof(b));
}

/*
 * The descriptor tables. GDT always (in kernel mode it is the bootstrap
 * GDT the segment registers were loaded from; the kernel rewrites it with
 * the same values and adds its TSS descriptor); for --entry user also the
 * TSS descriptors, the TSSs and the IDT, byte for byte what the SDK kernel
 * builds (rw/abi.h, "Descriptor contents").
 */
static int write_tables(struct vm *vm, const struct loader *ld, const struct boot_image *img)
{
	uint8_t gdt[RW_GDT_ENTRIES * 8] = { 0 };
	bool user = vm->cfg.entry == VM_ENTRY_USER;
	int ret;

	put_le64(gdt + RW_SEL_KCODE, RW_DESC_KCODE);
	put_le64(gdt + RW_SEL_KDATA, RW_DESC_KDATA);
	put_le64(gdt + (RW_SEL_UDATA & ~3), RW_DESC_UDATA);
	put_le64(gdt + (RW_SEL_UCODE & ~3), RW_DESC_UCODE);
	if (!user)
		return mem_write(&vm->mem, RW_GPA_GDT, gdt, sizeof(gdt));

	uint8_t tss[RW_MAX_VCPUS * RW_TSS_STRIDE] = { 0 };
	uint8_t idt[RW_NR_VECTORS * 16] = { 0 };

	for (unsigned n = 0; n < vm->cfg.ncpus; n++) {
		uint64_t base = RW_GPA_TSS + (uint64_t)n * RW_TSS_STRIDE;
		uint8_t *d = gdt + RW_SEL_TSS0 + 16 * n;
		uint8_t *t = tss + (uint64_t)n * RW_TSS_STRIDE;

		put_le64(d, RW_TSS_LIMIT | ((base & 0xffffff) << 16) | (0x8bULL << 40) |
				 (((base >> 24) & 0xff) << 56));
		put_le64(d + 8, base >> 32);
		put_le64(t + 4, img->stacks_base + (uint64_t)n * CPU_STRIDE + RW_KSTACK_SIZE);
		put_le16(t + 0x66, RW_TSS_IOMAP);
	}
	for (unsigned v = 0; v < RW_NR_VECTORS; v++) {
		uint64_t a = ld->vectors[v];
		uint32_t attr = v == RW_VEC_SYSCALL ? RW_GATE_ATTR_DPL3 : RW_GATE_ATTR;

		if (!a)
			continue;
		put_le64(idt + 16 * v, (a & 0xffff) | ((uint64_t)RW_SEL_KCODE << 16) |
					    ((uint64_t)attr << 32) | ((a & 0xffff0000) << 32));
		put_le64(idt + 16 * v + 8, a >> 32);
	}
	ret = mem_write(&vm->mem, RW_GPA_GDT, gdt, sizeof(gdt));
	if (!ret)
		ret = mem_write(&vm->mem, RW_GPA_TSS, tss, (uint64_t)vm->cfg.ncpus * RW_TSS_STRIDE);
	if (!ret)
		ret = mem_write(&vm->mem, RW_GPA_IDT, idt, sizeof(idt));
	return ret;
}

/*
 * Leave the console UART as PC firmware would: FIFOs on, receive interrupt
 * at 1 byte (rw/abi.h "console"). Done here, before any vCPU runs or any
 * input is fed, because enabling a 16550's FIFOs discards received bytes.
 * Goes through the bus like a guest access, so it works for whatever UART
 * model the board put there, and does nothing if there is none.
 */
static void init_console_uart(struct vm *vm)
{
	struct bus *pio = &vm->buses[BUS_PIO];
	uint8_t fcr = 0x01;

	if (bus_find(pio, RW_CONSOLE_PORT + 2))
		bus_dispatch(pio, NULL, RW_CONSOLE_PORT + 2, &fcr, 1, true);
}

int boot_load(struct vm *vm)
{
	struct loader ld = { .vm = vm, .path = vm->cfg.kernel, .fd = -1 };
	struct boot_image img = { 0 };
	size_t args_len = strnlen(vm->cfg.args, sizeof(vm->cfg.args));
	uint64_t stacks_size, end;
	struct stat st;
	int ret;

	ld.fd = open(ld.path, O_RDONLY | O_CLOEXEC);
	if (ld.fd < 0) {
		ret = -errno;
		rw_error("cannot open kernel '%s': %s", ld.path, strerror(-ret));
		return ret;
	}
	if (fstat(ld.fd, &st)) {
		ret = -errno;
		rw_error("cannot stat kernel '%s': %s", ld.path, strerror(-ret));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		rw_error("kernel '%s' is a directory", ld.path);
		ret = -EISDIR;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = bad_image(&ld, "not a regular file");
		goto out;
	}
	ld.size = (uint64_t)st.st_size;
	ret = parse_image(&ld);
	if (ret)
		goto out;

	/* per-vCPU stacks right after the image, page aligned */
	img.sdk = ld.has_note;
	img.kernel_entry = ld.has_note ? ld.note_kernel_entry : ld.eh.e_entry;
	img.user_entry = ld.has_note ? ld.note_user_entry : 0;
	if (ld.vectors_gpa && in_loaded(&ld, ld.vectors_gpa, 8ULL * RW_NR_VECTORS))
		img.vectors_gpa = ld.vectors_gpa;
	img.image_start = ld.image_start;
	img.image_end = ld.image_end;
	img.stacks_base = ALIGN_UP(ld.image_end, RW_PAGE_SIZE);
	stacks_size = (uint64_t)vm->cfg.ncpus * CPU_STRIDE;
	if (img.stacks_base < ld.image_end ||
	    __builtin_add_overflow(img.stacks_base, stacks_size, &end) ||
	    !mem_range_ok(&vm->mem, img.stacks_base, stacks_size)) {
		ret = bad_image(&ld, "no room in guest RAM for %u vCPU stacks after the image "
				     "(ends at 0x%llx; try a larger --mem)",
				vm->cfg.ncpus, (unsigned long long)ld.image_end);
		goto out;
	}
	img.free_start = end;
	if (args_len >= RW_ARGS_MAX || args_len >= sizeof(vm->cfg.args)) {
		rw_error("--args is %zu bytes, longer than the guest accepts (%u)", args_len,
			 RW_ARGS_MAX - 1);
		ret = RW_EBADIMAGE;
		goto out;
	}

	ret = copy_segments(&ld);
	if (!ret)
		ret = mem_write(&vm->mem, RW_GPA_ARGS, vm->cfg.args, args_len + 1);
	if (!ret)
		ret = write_page_tables(vm);
	if (!ret)
		ret = write_boot_info(vm, &img, (uint32_t)args_len);
	if (!ret)
		ret = write_tables(vm, &ld, &img);
	if (ret) {
		if (ret != RW_ELIMIT)
			rw_error("loading kernel '%s' into guest memory: %s", ld.path,
				 rw_strerror(ret));
		goto out;
	}
	init_console_uart(vm);
	vm->image = img;
	rw_debug("loaded '%s': [0x%llx, 0x%llx), %s image, kernel entry 0x%llx, user entry 0x%llx",
		 ld.path, (unsigned long long)img.image_start, (unsigned long long)img.image_end,
		 img.sdk ? "SDK" : "bare", (unsigned long long)img.kernel_entry,
		 (unsigned long long)img.user_entry);
out:
	free(ld.ph);
	close(ld.fd);
	return ret;
}

/* --------------------------------------------------------- vCPU state */

static struct kvm_segment segment(uint16_t sel, uint64_t desc)
{
	struct kvm_segment s = {
		.base = 0,
		.limit = 0xffffffff,
		.selector = sel,
		.type = (uint8_t)((desc >> 40) & 0xf),
		.present = 1,
		.dpl = (uint8_t)((desc >> 45) & 3),
		.db = (uint8_t)((desc >> 54) & 1),
		.s = 1,
		.l = (uint8_t)((desc >> 53) & 1),
		.g = 1,
	};

	return s;
}

/*
 * XCR0 for the guest: x87, SSE, and AVX and AVX-512 state when the host
 * supports them (AMX and other components that need extra permission or
 * larger save areas are left off). 0 if the host has no XSAVE.
 */
static uint64_t guest_xcr0(const struct vm *vm)
{
	const struct kvm_cpuid2 *c = vm->kvm.cpuid;
	bool xsave = false;
	uint64_t sup = 0, x;

	if (!c)
		return 0;
	for (unsigned i = 0; i < c->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == 1)
			xsave = e->ecx & (1u << 26);
		else if (e->function == 0xd && e->index == 0)
			sup = e->eax | (uint64_t)e->edx << 32;
	}
	if (!xsave || !(sup & XCR0_X87) || !(sup & XCR0_SSE))
		return 0;
	x = sup & (XCR0_X87 | XCR0_SSE | XCR0_AVX | XCR0_AVX512);
	if (!(x & XCR0_AVX) || (x & XCR0_AVX512) != XCR0_AVX512)
		x &= ~XCR0_AVX512;
	return x;
}

#define APIC_LVT_LINT0 0x350
#define APIC_LVT_MASKED (1u << 16)

int boot_setup_vcpu(struct vm *vm, struct vcpu *vcpu)
{
	const struct boot_image *img = &vm->image;
	bool user = vm->cfg.entry == VM_ENTRY_USER;
	uint64_t base = img->stacks_base + (uint64_t)vcpu->index * CPU_STRIDE;
	uint64_t xcr0 = guest_xcr0(vm);
	struct kvm_sregs s;
	struct kvm_regs r;
	struct kvm_fpu fpu;

	if (ioctl(vcpu->fd, KVM_GET_SREGS, &s))
		return -errno;
	if (user) {
		s.cs = segment(RW_SEL_UCODE, RW_DESC_UCODE);
		s.ss = segment(RW_SEL_UDATA, RW_DESC_UDATA);
		s.tr = (struct kvm_segment){
			.base = RW_GPA_TSS + (uint64_t)vcpu->index * RW_TSS_STRIDE,
			.limit = RW_TSS_LIMIT,
			.selector = (uint16_t)(RW_SEL_TSS0 + 16 * vcpu->index),
			.type = 0xb, /* busy 64-bit TSS */
			.present = 1,
		};
	} else {
		s.cs = segment(RW_SEL_KCODE, RW_DESC_KCODE);
		s.ss = segment(RW_SEL_KDATA, RW_DESC_KDATA);
	}
	s.ds = s.es = s.fs = s.gs = s.ss;
	s.gdt.base = RW_GPA_GDT;
	s.gdt.limit = RW_GDT_ENTRIES * 8 - 1;
	s.idt.base = RW_GPA_IDT;
	s.idt.limit = RW_NR_VECTORS * 16 - 1;
	s.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG;
	s.cr3 = RW_GPA_PGTABLE;
	s.cr4 = CR4_PAE | CR4_PGE | CR4_OSFXSR | CR4_OSXMMEXCPT | (xcr0 ? CR4_OSXSAVE : 0);
	s.efer = EFER_LME | EFER_LMA | EFER_NXE;
	if (ioctl(vcpu->fd, KVM_SET_SREGS, &s))
		return -errno;

	if (xcr0) {
		struct kvm_xcrs xcrs = { .nr_xcrs = 1 };

		xcrs.xcrs[0].xcr = 0;
		xcrs.xcrs[0].value = xcr0;
		if (ioctl(vcpu->fd, KVM_SET_XCRS, &xcrs))
			return -errno;
	}

	memset(&fpu, 0, sizeof(fpu));
	fpu.fcw = 0x37f;
	fpu.mxcsr = 0x1f80;
	if (ioctl(vcpu->fd, KVM_SET_FPU, &fpu))
		return -errno;

	memset(&r, 0, sizeof(r));
	r.rdi = vcpu->index;
	r.rsi = RW_GPA_BOOT_INFO;
	if (user) {
		r.rip = img->user_entry;
		r.rsp = base + CPU_STRIDE;
		r.rflags = 0x202;
	} else {
		r.rip = img->kernel_entry;
		r.rsp = base + RW_KSTACK_SIZE;
		r.rflags = 0x2;
	}
	if (ioctl(vcpu->fd, KVM_SET_REGS, &r))
		return -errno;

	if (vcpu->index > 0) {
		/* APs start runnable, not waiting for INIT/SIPI */
		struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };

		if (ioctl(vcpu->fd, KVM_SET_MP_STATE, &mp))
			return -errno;
	}

	/*
	 * Mask LINT0. KVM resets the BSP's LINT0 to ExtINT, so any ISA
	 * interrupt reaching the (never programmed) 8259 PIC would arrive as a
	 * vector below 32, which the guest takes for an exception. rewind's
	 * guests take device interrupts through the IOAPIC only.
	 */
	struct kvm_lapic_state lapic;
	uint32_t lint0;

	if (ioctl(vcpu->fd, KVM_GET_LAPIC, &lapic))
		return -errno;
	memcpy(&lint0, lapic.regs + APIC_LVT_LINT0, 4);
	lint0 |= APIC_LVT_MASKED;
	memcpy(lapic.regs + APIC_LVT_LINT0, &lint0, 4);
	if (ioctl(vcpu->fd, KVM_SET_LAPIC, &lapic))
		return -errno;
	return 0;
}
