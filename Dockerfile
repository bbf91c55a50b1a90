# campaign_lab's container image: the CLI, the pipelines and their contracts, the python3 kernel, the decision service.
# Built by `make image` (podman, or docker: CONTAINER=docker) from the project's wheel and the wheels it depends on,
# which `make image` collects into dist/wheels first: the build itself needs no network.
#
#   make image                                # campaign-lab:latest on python:3.11-slim
#   podman run --rm -v /srv/campaign_lab:/project campaign-lab:latest cycle --campaign campaigns/spring.yaml --waves 3
#   podman run -d -p 8780:8780 -v /srv/campaign_lab:/project -e CAMPAIGN_LAB_SERVE_HOST=0.0.0.0 campaign-lab:latest serve
#
# The project (settings.ini, lake, runs, inbox, outbox, campaigns) is a volume mounted at /project; the image holds the
# code: the pipelines and the data contracts are the image's, chosen by environment (CAMPAIGN_LAB_PIPELINES_DIR,
# CAMPAIGN_LAB_CONTRACTS_DIR), so a run always uses the pipelines of the code that runs it. Every other setting can be
# set the same way, CAMPAIGN_LAB_<KEY> overriding settings.ini.
ARG BASE=docker.io/library/python:3.11-slim-bookworm
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/campaign_lab \
    PATH=/opt/campaign_lab/bin:$PATH \
    MPLCONFIGDIR=/tmp/matplotlib \
    CAMPAIGN_LAB_ROOT=/project \
    CAMPAIGN_LAB_PIPELINES_DIR=/opt/campaign_lab/share/campaign_lab/pipelines \
    CAMPAIGN_LAB_CONTRACTS_DIR=/opt/campaign_lab/share/campaign_lab/data_contracts

# a user of its own (uid 10001, as the pod DAG's securityContext says), never root
RUN groupadd --gid 10001 campaign \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/campaign --shell /usr/sbin/nologin campaign

# the project's wheel and its dependencies' wheels, installed without an index; then the python3 kernel the pipelines run
# on, registered in the venv (its argv is the venv's python)
COPY dist/wheels/ /tmp/wheels/
RUN python3 -m venv /opt/campaign_lab \
 && /opt/campaign_lab/bin/pip install --no-index --find-links /tmp/wheels "campaign_lab[serve]" \
 && /opt/campaign_lab/bin/python -m ipykernel install --prefix /opt/campaign_lab --name python3 --display-name "Python 3 (campaign_lab)" \
 && rm -rf /tmp/wheels

COPY nbs/pipelines/ /opt/campaign_lab/share/campaign_lab/pipelines/
COPY data_contracts/ /opt/campaign_lab/share/campaign_lab/data_contracts/
COPY campaigns/ /opt/campaign_lab/share/campaign_lab/campaigns/
COPY docker/settings.ini /opt/campaign_lab/share/campaign_lab/settings.ini

USER 10001:10001
WORKDIR /project
# the decision service (`serve`): its readiness endpoint; other commands run as jobs and exit
EXPOSE 8780
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('CAMPAIGN_LAB_SERVE_PORT', '8780')}/health/live\", timeout=4)"]
ENTRYPOINT ["campaign-lab"]
CMD ["--help"]
