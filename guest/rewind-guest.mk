# rewind-guest.mk - build rewind guest images with make.
#
#   REWIND_SDK = /usr/local
#   include $(REWIND_SDK)/share/rewind/rewind-guest.mk
#   all: myprog.elf            # built from myprog.c by the rule below
#
# Each image links the program with the SDK's crt0.o, CPL0 kernel
# (rw_kernel.o), library (librw.a) and linker script (rw.ld). Programs with
# several sources: list the objects, e.g.
#   myprog.elf: main.o util.o ; $(RW_LINK) $^ $(RW_LIBS) -o $@
#
# RW_COVERAGE=1 (on the command line, or set before the include) compiles
# the program's objects with edge-coverage instrumentation for fuzzing
# (rw/cov.h): RW_COV_CFLAGS, by default -fsanitize-coverage=trace-pc for gcc
# and -fsanitize-coverage=trace-pc-guard for clang (RW_CC is asked which it
# is, so set RW_CC before the include too). The runtime is in librw.a and
# comes with the first instrumented object; the SDK itself is never
# instrumented.
REWIND_SDK ?= /usr/local
RW_CC ?= cc
RW_INC := $(REWIND_SDK)/include/rewind
RW_LIB := $(REWIND_SDK)/lib/rewind/guest
RW_CFLAGS := -std=gnu11 -O2 -ffreestanding -fno-pic -fno-pie -mcmodel=small \
	-fno-stack-protector -fcf-protection=none -fno-asynchronous-unwind-tables \
	-Wall -Wextra -I$(RW_INC)
RW_COVERAGE ?= 0
ifneq ($(findstring clang,$(shell $(RW_CC) --version 2>/dev/null)),)
RW_COV_CFLAGS ?= -fsanitize-coverage=trace-pc-guard
else
RW_COV_CFLAGS ?= -fsanitize-coverage=trace-pc
endif
ifeq ($(RW_COVERAGE),1)
RW_CFLAGS += $(RW_COV_CFLAGS)
endif
RW_LINK = $(RW_CC) -nostdlib -static -no-pie -Wl,--build-id=none -T $(RW_LIB)/rw.ld \
	$(RW_LIB)/crt0.o $(RW_LIB)/rw_kernel.o
RW_LIBS = $(RW_LIB)/librw.a -lgcc

%.o: %.c
	$(RW_CC) $(RW_CFLAGS) $(CFLAGS) -c $< -o $@

%.elf: %.o
	$(RW_LINK) $< $(RW_LIBS) -o $@
