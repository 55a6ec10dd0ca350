# Image for one instance of the leader-election weather demo (see docker-compose.yml, profile "app").
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY src/ /app/src/
RUN useradd --create-home --uid 10001 app
USER app
ENV PYTHONUNBUFFERED=1
STOPSIGNAL SIGTERM
CMD ["python", "src/DistributedMutex/test.py"]
