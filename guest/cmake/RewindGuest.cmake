# RewindGuest.cmake - build rewind guest images with CMake.
#
#   include(/usr/local/share/rewind/cmake/RewindGuest.cmake)
#   rw_guest_program(mytarget SOURCES main.c util.c)    # -> mytarget.elf
#
# rw_guest_program(<name> SOURCES <src>... [CFLAGS <flag>...] [COVERAGE]
#                  [OUTPUT_DIR <dir>] [DEPENDS <file-or-target>...]
#                  [ELF_VAR <var>] [NO_TARGET])
#
# Compiles the sources with the freestanding guest flags (never the
# project's own CMAKE_C_FLAGS, which may carry sanitizers or other host-only
# options), links them with the SDK's crt0.o, rw_kernel.o, librw.a and rw.ld
# into <OUTPUT_DIR>/<name>.elf (default: the current binary dir), checks the
# image's CPL0 code, and adds a target rw_guest_<name> (part of ALL) that
# builds it. NO_TARGET skips the target (the caller drives the .elf through
# its own); ELF_VAR receives the path of the .elf. COVERAGE compiles the
# sources with edge-coverage instrumentation (REWIND_GUEST_COV_CFLAGS; the
# runtime, rw/cov.h, comes from librw.a): only these sources, never the SDK.
#
# Settings (set them before include() to override):
#   REWIND_GUEST_CC           compiler (default: CMAKE_C_COMPILER, else cc)
#   REWIND_GUEST_INCLUDE_DIR  directory holding rw/rw.h
#   REWIND_GUEST_LIB_DIR      directory holding crt0.o rw_kernel.o librw.a rw.ld
#   REWIND_GUEST_CHECK        the check-cpl0.sh script ("" to skip the check)
#   REWIND_GUEST_LIB_DEPENDS  extra dependencies of every image (in-tree use)
#   REWIND_GUEST_COV_CFLAGS   the COVERAGE flags (default: by compiler, gcc
#                             -fsanitize-coverage=trace-pc, clang
#                             -fsanitize-coverage=trace-pc-guard)
include_guard(GLOBAL)

get_filename_component(_rw_guest_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT DEFINED REWIND_GUEST_INCLUDE_DIR)
  set(REWIND_GUEST_INCLUDE_DIR ${_rw_guest_prefix}/include/rewind)
endif()
if(NOT DEFINED REWIND_GUEST_LIB_DIR)
  set(REWIND_GUEST_LIB_DIR ${_rw_guest_prefix}/lib/rewind/guest)
endif()
if(NOT DEFINED REWIND_GUEST_CHECK)
  set(REWIND_GUEST_CHECK ${_rw_guest_prefix}/share/rewind/check-cpl0.sh)
endif()
if(NOT DEFINED REWIND_GUEST_CC)
  if(CMAKE_C_COMPILER)
    set(REWIND_GUEST_CC ${CMAKE_C_COMPILER})
  else()
    set(REWIND_GUEST_CC cc)
  endif()
endif()
find_program(REWIND_GUEST_OBJDUMP NAMES objdump)
if(NOT DEFINED REWIND_GUEST_COV_CFLAGS)
  execute_process(COMMAND ${REWIND_GUEST_CC} --version
    OUTPUT_VARIABLE _rw_guest_cc_version ERROR_QUIET)
  if(_rw_guest_cc_version MATCHES "clang")
    set(REWIND_GUEST_COV_CFLAGS -fsanitize-coverage=trace-pc-guard)
  else()
    set(REWIND_GUEST_COV_CFLAGS -fsanitize-coverage=trace-pc)
  endif()
endif()
find_program(REWIND_GUEST_NM NAMES nm)

# Flags for CPL3 program code. SSE is allowed (the kernel never touches
# FP/SIMD state); add e.g. -mavx2 in CFLAGS if the host has it.
set(REWIND_GUEST_CFLAGS
  -std=gnu11 -O2 -ffreestanding -fno-pic -fno-pie -mcmodel=small
  -fno-stack-protector -fcf-protection=none -fno-asynchronous-unwind-tables
  -Wall -Wextra)
set(REWIND_GUEST_LDFLAGS -nostdlib -static -no-pie -Wl,--build-id=none)

function(rw_guest_program name)
  cmake_parse_arguments(G "NO_TARGET;COVERAGE" "OUTPUT_DIR;ELF_VAR" "SOURCES;CFLAGS;DEPENDS" ${ARGN})
  if(NOT G_SOURCES)
    message(FATAL_ERROR "rw_guest_program(${name}): no SOURCES")
  endif()
  if(NOT G_OUTPUT_DIR)
    set(G_OUTPUT_DIR ${CMAKE_CURRENT_BINARY_DIR})
  endif()
  set(lib ${REWIND_GUEST_LIB_DIR})
  set(objdir ${CMAKE_CURRENT_BINARY_DIR}/rw_guest_${name}.dir)
  file(MAKE_DIRECTORY ${objdir} ${G_OUTPUT_DIR})
  file(GLOB sdk_headers ${REWIND_GUEST_INCLUDE_DIR}/rw/*.h)
  set(cov)
  if(G_COVERAGE)
    set(cov ${REWIND_GUEST_COV_CFLAGS})
  endif()

  set(objs)
  foreach(src IN LISTS G_SOURCES)
    get_filename_component(abs ${src} ABSOLUTE)
    get_filename_component(base ${src} NAME)
    set(obj ${objdir}/${base}.o)
    add_custom_command(OUTPUT ${obj}
      COMMAND ${REWIND_GUEST_CC} ${REWIND_GUEST_CFLAGS} ${cov} ${G_CFLAGS}
              -I${REWIND_GUEST_INCLUDE_DIR} -c ${abs} -o ${obj}
      DEPENDS ${abs} ${sdk_headers} ${G_DEPENDS}
      COMMENT "Compiling guest ${name}: ${base}"
      VERBATIM)
    list(APPEND objs ${obj})
  endforeach()

  set(elf ${G_OUTPUT_DIR}/${name}.elf)
  set(check)
  if(REWIND_GUEST_CHECK AND REWIND_GUEST_OBJDUMP)
    set(check COMMAND sh ${REWIND_GUEST_CHECK} ${REWIND_GUEST_OBJDUMP} ${REWIND_GUEST_NM}
              ${elf} .ktext)
  endif()
  add_custom_command(OUTPUT ${elf}
    COMMAND ${REWIND_GUEST_CC} ${REWIND_GUEST_LDFLAGS} -T ${lib}/rw.ld
            ${lib}/crt0.o ${lib}/rw_kernel.o ${objs} ${lib}/librw.a -lgcc -o ${elf}
    ${check}
    DEPENDS ${objs} ${lib}/rw.ld ${lib}/crt0.o ${lib}/rw_kernel.o ${lib}/librw.a
            ${REWIND_GUEST_LIB_DEPENDS} ${G_DEPENDS}
    COMMENT "Linking guest image ${name}.elf"
    VERBATIM)
  if(NOT G_NO_TARGET)
    add_custom_target(rw_guest_${name} ALL DEPENDS ${elf})
  endif()
  if(G_ELF_VAR)
    set(${G_ELF_VAR} ${elf} PARENT_SCOPE)
  endif()
endfunction()
