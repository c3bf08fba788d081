"""Data contracts: the chatbot model (`chatbot.py`), the contact-file schema (`contacts.py`)."""
