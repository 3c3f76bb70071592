"""The hotline victims call: Twilio's inbound voice webhook answering with a menu in English and Spanish."""
