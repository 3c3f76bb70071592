from services.delivery.app import create_app
from services.delivery.settings import DeliverySettings
from shared.serve import serve

serve(create_app, DeliverySettings)
