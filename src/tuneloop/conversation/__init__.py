"""Chat: tuneloop's own chat sessions, OpenAI's Responses and Conversations, stored chat completions, assistants
(local definitions) and image descriptions. Every exchange is logged with its labels."""
