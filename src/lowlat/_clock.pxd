# Clock helpers inlined into every compiled module that cimports them (no state lives here).
#
# monotonic_ns() is CLOCK_MONOTONIC, the clock behind time.perf_counter_ns() on Linux, so stamps
# taken in C and in Python mix. rdtsc() reads the CPU's time-stamp counter (0 where there is none):
# a third of the cost of clock_gettime, usable for differences once a rate is calibrated (the
# queues do that at import; see lowlat.containers._c).

from libc.stdint cimport int64_t
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

cdef extern from *:
    """
    #if defined(__x86_64__)
    #include <x86intrin.h>
    static inline long long lowlat_rdtsc(void) { return (long long)__rdtsc(); }
    #define LOWLAT_HAVE_TSC 1
    #else
    static inline long long lowlat_rdtsc(void) { return 0; }
    #define LOWLAT_HAVE_TSC 0
    #endif
    """
    long long lowlat_rdtsc() noexcept nogil
    int LOWLAT_HAVE_TSC


cdef inline int64_t monotonic_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline int64_t rdtsc() noexcept nogil:
    return lowlat_rdtsc()
