"""Data contracts: the chatbot model (`chatbot.py`) and the pandera contact-file schema (`contacts.py`)."""
