# Big-endian (network order) integer loads and stores, inlined into every compiled module that
# cimports them (no state lives here): the byte order of OUCH and SoupBinTCP fields.

from libc.stdint cimport uint32_t, uint64_t


cdef inline void store_u32(unsigned char* p, uint32_t x) noexcept nogil:
    p[0] = <unsigned char>(x >> 24)
    p[1] = <unsigned char>(x >> 16)
    p[2] = <unsigned char>(x >> 8)
    p[3] = <unsigned char>x


cdef inline void store_u64(unsigned char* p, uint64_t x) noexcept nogil:
    store_u32(p, <uint32_t>(x >> 32))
    store_u32(p + 4, <uint32_t>x)


cdef inline uint32_t load_u32(const unsigned char* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | <uint32_t>p[3]


cdef inline uint64_t load_u64(const unsigned char* p) noexcept nogil:
    return (<uint64_t>load_u32(p) << 32) | <uint64_t>load_u32(p + 4)
