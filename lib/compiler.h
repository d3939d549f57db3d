/*
 * compiler.h - compiler attributes used across libkeyway.  Never
 * installed.
 */
#ifndef KEYWAY_COMPILER_H
#define KEYWAY_COMPILER_H

/* A status that must be looked at: dropping it would hide a refusal. */
#define KWI_UNUSED_RESULT __attribute__((warn_unused_result))

#endif /* KEYWAY_COMPILER_H */
