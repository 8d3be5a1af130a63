"""RTCP (RFC 3550, RFC 3611) parsing, stream binding through SDP, and E-model MOS (ITU-T G.107)."""
