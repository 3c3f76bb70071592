from services.subscription.app import create_app
from services.subscription.settings import SubscriptionSettings
from shared.serve import serve

serve(create_app, SubscriptionSettings)
