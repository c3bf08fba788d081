"""The SMS aggregator boundary: everything that speaks Twilio's Programmable Messaging dialect.

`signature` signs and checks webhook posts (`X-Twilio-Signature`), for the sandbox that sends
them and for our receiver that checks them. `reply_script` reads the YAML file that says how the
sandbox's pretend contacts behave (who answers what, which numbers fail). `sandbox` is a local
HTTP stand-in for Twilio's Messages API (rate limits, injected faults, status callbacks, inbound
replies) so campaigns can be sent, benchmarked and tested without a Twilio account.
"""
