"""Test documents shaped like AWS's ip-ranges.json."""

import json


def ip_ranges(ipv4, ipv6, serial, service="CLOUDFRONT_ORIGIN_FACING"):
    return json.dumps({
        "syncToken": str(serial), "createDate": "2026-11-01-00-00-00",
        "prefixes": [{"ip_prefix": p, "region": "GLOBAL", "network_border_group": "GLOBAL", "service": service}
                     for p in ipv4]
        + [{"ip_prefix": "13.32.0.0/15", "region": "GLOBAL", "network_border_group": "GLOBAL", "service": "CLOUDFRONT"},
           {"ip_prefix": "3.5.140.0/22", "region": "ap-northeast-2", "network_border_group": "ap-northeast-2",
            "service": "AMAZON"}],
        "ipv6_prefixes": [{"ipv6_prefix": p, "region": "GLOBAL", "network_border_group": "GLOBAL", "service": service}
                          for p in ipv6]
        + [{"ipv6_prefix": "2600:9000::/28", "region": "GLOBAL", "network_border_group": "GLOBAL",
            "service": "CLOUDFRONT"}],
    }).encode()
