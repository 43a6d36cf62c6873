/*
 * The NBD wire protocol as siov's export speaks it (fixed newstyle
 * negotiation, simple and structured replies), from the protocol document
 * (github.com/NetworkBlockDevice/nbd, doc/proto.md).  Every multi-byte field
 * is big-endian on the wire.  Debian ships no header with these (libnbd keeps
 * its nbd-protocol.h private), so they are written out here.
 */
#ifndef SIOV_NBD_WIRE_H
#define SIOV_NBD_WIRE_H

#include <stdint.h>

#define NBD_MAGIC	  0x4e42444d41474943ull /* "NBDMAGIC" */
#define NBD_IHAVEOPT	  0x49484156454f5054ull /* "IHAVEOPT" */
#define NBD_REP_MAGIC	  0x0003e889045565a9ull
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_MAGIC  0x67446698u
#define NBD_STRUCT_MAGIC  0x668e33efu

/* Handshake flags (server) and client flags. */
#define NBD_FLAG_FIXED_NEWSTYLE	  1u
#define NBD_FLAG_NO_ZEROES	  2u
#define NBD_FLAG_C_FIXED_NEWSTYLE 1u
#define NBD_FLAG_C_NO_ZEROES	  2u

/* Transmission flags. */
#define NBD_FLAG_HAS_FLAGS	   (1u << 0)
#define NBD_FLAG_READ_ONLY	   (1u << 1)
#define NBD_FLAG_SEND_FLUSH	   (1u << 2)
#define NBD_FLAG_SEND_FUA	   (1u << 3)
#define NBD_FLAG_SEND_TRIM	   (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)

/* Options. */
#define NBD_OPT_EXPORT_NAME	 1u
#define NBD_OPT_ABORT		 2u
#define NBD_OPT_LIST		 3u
#define NBD_OPT_STARTTLS	 5u
#define NBD_OPT_INFO		 6u
#define NBD_OPT_GO		 7u
#define NBD_OPT_STRUCTURED_REPLY 8u

/* Option replies. */
#define NBD_REP_ACK	     1u
#define NBD_REP_SERVER	     2u
#define NBD_REP_INFO	     3u
#define NBD_REP_FLAG_ERROR   (1u << 31)
#define NBD_REP_ERR_UNSUP    (1u | NBD_REP_FLAG_ERROR)
#define NBD_REP_ERR_POLICY   (2u | NBD_REP_FLAG_ERROR)
#define NBD_REP_ERR_INVALID  (3u | NBD_REP_FLAG_ERROR)
#define NBD_REP_ERR_TLS_REQD (5u | NBD_REP_FLAG_ERROR)
#define NBD_REP_ERR_UNKNOWN  (6u | NBD_REP_FLAG_ERROR)
#define NBD_REP_ERR_TOO_BIG  (9u | NBD_REP_FLAG_ERROR)

#define NBD_INFO_EXPORT	    0u
#define NBD_INFO_BLOCK_SIZE 3u

/* Commands and their flags. */
#define NBD_CMD_READ	     0u
#define NBD_CMD_WRITE	     1u
#define NBD_CMD_DISC	     2u
#define NBD_CMD_FLUSH	     3u
#define NBD_CMD_TRIM	     4u
#define NBD_CMD_WRITE_ZEROES 6u
#define NBD_CMD_FLAG_FUA     (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE (1u << 1)

/* Structured reply chunks. */
#define NBD_REPLY_FLAG_DONE	   1u
#define NBD_REPLY_TYPE_NONE	   0u
#define NBD_REPLY_TYPE_OFFSET_DATA 1u
#define NBD_REPLY_TYPE_ERROR	   32769u

/* Errors on the wire (Linux values, as the protocol defines them). */
#define NBD_EPERM     1u
#define NBD_EIO	      5u
#define NBD_ENOMEM    12u
#define NBD_EINVAL    22u
#define NBD_ENOSPC    28u
#define NBD_EOVERFLOW 75u
#define NBD_ENOTSUP   95u
#define NBD_ESHUTDOWN 108u

#endif
