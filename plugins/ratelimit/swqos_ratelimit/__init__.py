"""swqos rate limiter: GCRA per address, per trader, handshakes per minute"""
