/*
 * seams.h - the test seams of libkeyway: ways for a unit test to reach
 * what the library otherwise keeps to itself (its clock, which AES-GCM it
 * runs, which libcrypto it loads, how often it writes usage counts).
 *
 * They exist only in the library built with -DKW_TEST_SEAMS, which is
 * lib/libkeyway_test.la, linked by the unit tests and never installed:
 * libkeyway.so has no way to change any of this, and the CLI tests check
 * that it does not even hold the symbols.  Without KW_TEST_SEAMS this
 * header declares nothing, so that a call from production code does not
 * build.
 *
 * But for kwi_test_force_openssl(), which is atomic, each is a plain store
 * that the library reads unlocked: call them while no other thread uses the
 * library, in a test's setup or before opening the context they affect.
 */
#ifndef KEYWAY_SEAMS_H
#define KEYWAY_SEAMS_H

#ifdef KW_TEST_SEAMS

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The clock of the library and of its modules (kwi_now(), the host's now()):
 * quota windows, ledger rows, the time of a use.  clock() returns seconds
 * since the epoch; NULL puts back time(NULL).  Lets a test cross a quota
 * window, or date rows, without waiting.  (clock.c)
 */
void kwi_test_set_clock(int64_t (*clock)(void));

/*
 * Seal and open with OpenSSL even where libsodium's AES-NI code runs (on:
 * true; false goes back to what the CPU allows), so that the OpenSSL way
 * is tested on machines that have AES-NI.  Returns how many seals and
 * opens took OpenSSL's way so far, so a test sees it was taken.
 * (seal.c)
 */
unsigned long kwi_test_force_openssl(bool on);

/*
 * Load soname instead of libcrypto, to see what happens where it is
 * missing.  Takes effect only before OpenSSL is first needed in the
 * process; soname is not copied and must outlive that.  (ossl.c)
 */
void kwi_test_libcrypto(const char *soname);

/*
 * PBKDF2-HMAC-SHA256 on libsodium with any parameters, for published test
 * vectors (the library itself runs it only with its own): out_len bytes
 * derived from pass and salt into out.  false for no iterations or an
 * output longer than PBKDF2 defines.  (kdf.c)
 */
bool kwi_test_pbkdf2_sha256(const char *pass, size_t pass_len,
			    const unsigned char *salt, size_t salt_len,
			    unsigned long iterations, unsigned char *out,
			    size_t out_len);

/*
 * Write use counts every ms milliseconds instead of every few seconds,
 * in the contexts opened after the call (0: as usual), so that a test
 * sees counts written without waiting.  (usecount.c)
 */
void kwi_test_usecount_flush_ms(int ms);

#endif /* KW_TEST_SEAMS */

#endif
