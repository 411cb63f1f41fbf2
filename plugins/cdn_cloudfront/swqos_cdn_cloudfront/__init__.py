"""swqos client-IP resolver for Amazon CloudFront: ``CloudFront-Viewer-Address``, believed only from
CloudFront's origin-facing servers."""

__version__ = "0.1.0"
