/* Wine 8 (Debian 12's wine64) has no bcryptprimitives.dll, whose ProcessPrng Rust's standard
 * library (1.78+) imports on Windows for random numbers; every Windows 10+ system has it. .ci/run
 * builds this stand-in with mingw-w64 into the wine prefix so the real alibridge.exe can start
 * under wine. It draws from RtlGenRandom (advapi32's SystemFunction036), the documented
 * predecessor. Nothing of this ships. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
