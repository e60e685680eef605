"""``python -m assay.inference.fake_openai``: serve the fake OpenAI-compatible API."""

from assay.inference.fake_openai._server import main

raise SystemExit(main())
