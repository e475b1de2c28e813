"""SGMA Part Explorer: namespace package mapping engine/, app/ and resources/."""
