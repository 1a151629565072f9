/*
 * fuzz_board.c - the board's devices on a VM made by hand (fuzz_common.h),
 * shared by the device harness and the corpus generator so that the
 * records one writes are the records the other expects.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "board.h"
#include "fuzz_common.h"
#include "util.h"
#include "vm.h"

#define DISK_BYTES (64 * 1024)

void fuzz_board_init(struct vm *vm)
{
	struct vm_disk_config *d;
	char path[4200];
	uint8_t *content;
	int fd, ret;

	fuzz_vm_init(vm, 1, 64ULL << 20, true);
	/* the event thread never runs, but devices register their fds with it */
	vm->epfd = epoll_create1(EPOLL_CLOEXEC);

	/* a disk with the same bytes every time: records name its identity */
	snprintf(path, sizeof(path), "%s/disk.img", fuzz_tmpdir("board"));
	content = malloc(DISK_BYTES);
	if (!content)
		abort();
	for (size_t i = 0; i < DISK_BYTES; i++)
		content[i] = (uint8_t)(i * 7 + (i >> 12));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || rw_write_all(fd, content, DISK_BYTES) || close(fd)) {
		perror("fuzz: writing the disk");
		exit(1);
	}
	free(content);

	config_init(&vm->cfg);
	vm->cfg.mem_size = vm->mem.size;
	vm->cfg.serial_in = false;
	snprintf(vm->cfg.serial_out, sizeof(vm->cfg.serial_out), "/dev/null");
	vm->cfg.ndisks = 1;
	d = &vm->cfg.disks[0];
	snprintf(d->path, sizeof(d->path), "%s", path);
	snprintf(d->id, sizeof(d->id), "data");
	d->engine = DISK_ENGINE_SYNC;
	ret = board_build(vm);
	if (ret) {
		fprintf(stderr, "fuzz: board_build: %s\n", rw_strerror(ret));
		exit(1);
	}
}
