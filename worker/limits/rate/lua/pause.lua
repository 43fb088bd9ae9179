-- Seconds until the shared pause ends (<= 0: none).
return tostring(pause - now)
