from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.serve import serve

serve(create_app, IngestSettings)
