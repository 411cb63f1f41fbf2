"""swqos client-IP resolver for Amazon CloudFront"""
