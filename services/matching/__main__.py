from services.matching.app import create_app
from services.matching.settings import MatchingSettings
from shared.serve import serve

serve(create_app, MatchingSettings)
