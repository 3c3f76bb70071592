from services.ops.app import create_app
from services.ops.settings import OpsSettings
from shared.serve import serve

serve(create_app, OpsSettings)
