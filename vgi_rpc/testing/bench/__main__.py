"""``python -m vgi_rpc.testing.bench RATIOS.json --baseline FILE``: the ratio gate as a command."""

import sys

from vgi_rpc.testing.bench._gate import main

sys.exit(main())
